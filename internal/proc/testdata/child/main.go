// Command child is the program proc's tests run: it prints its arguments as
// stdout lines, writes "to stderr" on stderr, then does what -then says.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	then := flag.String("then", "wait", "wait: exit 0 on SIGTERM; exit: exit -code at once")
	code := flag.Int("code", 0, "exit code for -then exit")
	flag.Parse()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	fmt.Fprintln(os.Stderr, "to stderr")
	for _, l := range flag.Args() {
		fmt.Println(l)
	}
	if *then == "wait" {
		<-sig
	}
	os.Exit(*code)
}
