// Command promcheck lints Prometheus text read from standard input with
// the linter that `promtool check metrics` runs (client_golang's promlint),
// and answers as promtool does: each problem on standard error as "metric
// text", exit 0 when there is none, 3 when there are some, 1 when the text
// does not parse. It exists because building promtool pulls in all of
// Prometheus (minutes, gigabytes); this builds in seconds from the same
// linter at the version promtool v0.316.0 uses.
package main

import (
	"fmt"
	"os"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func main() {
	problems, err := promlint.New(os.Stdin).Lint()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error while linting:", err)
		os.Exit(1)
	}
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, p.Metric, p.Text)
	}
	if len(problems) > 0 {
		os.Exit(3)
	}
}
