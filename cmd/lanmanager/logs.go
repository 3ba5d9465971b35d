package main

import "github.com/urfave/cli/v2"

func logsCommand() *cli.Command {
	return &cli.Command{Name: "logs", Usage: "show an instance's output (not implemented yet)", Hidden: true}
}
