package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"berth/cmd/internal/cliapp"
	"berth/lan"
)

func needRebalanceCommand() *cli.Command {
	return &cli.Command{
		Name: "rebalance",
		Usage: "spread a need's instances evenly over the masters that may take them, moving one at a time: " +
			"each is started and approved elsewhere before its old child is stopped",
		ArgsUsage: "NAME | --all",
		Flags: append(clientFlags(),
			&cli.BoolFlag{Name: "all", Usage: "rebalance every need"},
			jsonFlag(),
		),
		Action: func(c *cli.Context) error {
			pos, command, err := cliapp.SplitArgs(c)
			switch {
			case err != nil:
				return cliapp.Usage("%s", err)
			case len(command) > 0:
				return cliapp.Usage("need rebalance takes no command after --")
			case c.Bool("all") && len(pos) > 0:
				return cliapp.Usage("need rebalance: give a NAME or --all, not both (got %q and --all)", pos)
			case !c.Bool("all") && len(pos) == 0:
				return cliapp.Usage("need rebalance: give the NAME of a need, or --all for every need")
			case len(pos) > 1:
				return cliapp.Usage("need rebalance takes one NAME, got %q; use --all for every need", pos)
			}
			cl, err := newClient(c)
			if err != nil {
				return err
			}
			var list []*lan.Rebalance
			if c.Bool("all") {
				if list, err = cl.RebalanceAll(c.Context); err != nil {
					return err
				}
			} else {
				rb, err := cl.Rebalance(c.Context, pos[0])
				if err != nil {
					return err
				}
				list = []*lan.Rebalance{rb}
			}
			if c.Bool("json") {
				if c.Bool("all") {
					return printList(c.App.Writer, list)
				}
				return printJSON(c.App.Writer, list[0])
			}
			if len(list) == 0 {
				fmt.Fprintln(c.App.Writer, "no need declared; nothing to move")
			}
			for _, rb := range list {
				printRebalance(c.App.Writer, rb)
			}
			return nil
		},
	}
}

// printRebalance says in one line what will move: `need web: 3 to move
// (m1→m2 ×3), one at a time; now m1 6, m2 0`.
func printRebalance(w io.Writer, rb *lan.Rebalance) {
	spread := describeSpread(rb.Spread)
	if len(rb.Moves) == 0 {
		why := rb.Note
		if rb.Moving != "" {
			why = "moving " + rb.Moving
		}
		fmt.Fprintf(w, "need %s: nothing to move (%s); %s\n", rb.Need, why, spread)
		return
	}
	count := map[string]int{}
	var order []string
	for _, m := range rb.Moves {
		k := m.From + "→" + m.To
		if count[k] == 0 {
			order = append(order, k)
		}
		count[k]++
	}
	var parts []string
	for _, k := range order {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, count[k]))
	}
	moving := ""
	if rb.Moving != "" {
		moving = fmt.Sprintf("; %s moving now", rb.Moving)
	}
	fmt.Fprintf(w, "need %s: %d to move (%s), one at a time%s; now %s\n", rb.Need, len(rb.Moves), strings.Join(parts, ", "), moving, spread)
}

// describeSpread reads "m1 6, m2 0", or "no master".
func describeSpread(sp map[string]int) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(sp)) {
		parts = append(parts, fmt.Sprintf("%s %d", name, sp[name]))
	}
	if len(parts) == 0 {
		return "no master"
	}
	return strings.Join(parts, ", ")
}
