package cliapp

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// CompletionCommand is `PROG completion bash|zsh|fish`: it prints a script
// that the shell sources to complete PROG's commands and flags. Bash and
// zsh ask the program itself (urfave/cli's --generate-bash-completion);
// fish gets a static list, made from a fresh app (newApp): urfave/cli's
// fish generator loops forever on an app that has run, whose commands carry
// the help command.
func CompletionCommand(name string, newApp func() *cli.App) *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script: bash, zsh or fish",
		ArgsUsage: "bash|zsh|fish",
		Description: "Load it in the running shell, or add the line to the shell's start-up file:\n" +
			"  bash: source <(" + name + " completion bash)\n" +
			"  zsh:  source <(" + name + " completion zsh)\n" +
			"  fish: " + name + " completion fish | source",
		Action: func(c *cli.Context) error {
			pos, command, err := SplitArgs(c)
			if err != nil {
				return Usage("%s", err)
			}
			if len(pos) != 1 || len(command) > 0 {
				return Usage("completion: want one shell, bash, zsh or fish; got %s", quoteList(append(pos, command...)))
			}
			fn := "_" + strings.ReplaceAll(name, "-", "_") + "_complete"
			switch pos[0] {
			case "bash":
				fmt.Fprintf(c.App.Writer, bashScript, fn, name)
			case "zsh":
				fmt.Fprintf(c.App.Writer, zshScript, name, fn, name)
			case "fish":
				s, err := newApp().ToFishCompletion()
				if err != nil {
					return err
				}
				fmt.Fprint(c.App.Writer, s)
			default:
				return Usage("completion: unknown shell %q; want bash, zsh or fish", pos[0])
			}
			return nil
		},
	}
}

const bashScript = `# bash completion for %[2]s
%[1]s() {
  local cur words
  COMPREPLY=()
  cur="${COMP_WORDS[COMP_CWORD]}"
  if [[ "$cur" == -* ]]; then
    words=$("${COMP_WORDS[@]:0:$COMP_CWORD}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    words=$("${COMP_WORDS[@]:0:$COMP_CWORD}" --generate-bash-completion 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o bashdefault -o default -F %[1]s %[2]s
`

const zshScript = `#compdef %[1]s
%[2]s() {
  local -a opts
  local cur=${words[-1]}
  if [[ "$cur" == -* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
compdef %[2]s %[3]s
`
