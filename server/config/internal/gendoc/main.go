// Command gendoc writes docs/configuration.md from the structs of package
// config. Run it through `go generate ./server/config`.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"

	"github.com/pgquorum/pgquorum/server/config"
)

func main() {
	out := flag.String("o", "docs/configuration.md", "output file")
	flag.Parse()
	var b bytes.Buffer
	if err := config.WriteReference(&b); err != nil {
		fmt.Fprintln(os.Stderr, "gendoc:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(*out, b.Bytes(), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gendoc:", err)
		os.Exit(1)
	}
}
