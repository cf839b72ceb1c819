// Command azdo-keda-scaler is a KEDA external scaler for Azure Pipelines
// agent pools, with a sweeper of stale offline agents. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // standbyTimeZone: IANA zones in an image without /usr/share/zoneinfo

	"github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "azdo-keda-scaler:", err)
		os.Exit(2)
	}
}
