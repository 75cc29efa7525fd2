// Command bigtable-emulator runs Google's in-memory Cloud Bigtable server
// (cloud.google.com/go/bigtable/bttest), the same one gcloud's emulator runs.
package main

import (
	"flag"
	"fmt"
	"log"

	"cloud.google.com/go/bigtable/bttest"
)

func main() {
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 8086, "port to listen on (0 picks a free one)")
	flag.Parse()
	srv, err := bttest.NewServer(fmt.Sprintf("%s:%d", *host, *port))
	if err != nil {
		log.Fatalf("bigtable emulator: %v", err)
	}
	fmt.Printf("[bttest] Cloud Bigtable emulator running on %s\n", srv.Addr)
	select {}
}
