// goprog is a Go program for the checkpoint tests: goroutines hashing,
// a ticker, a pending timer and a TCP server with a connected client in
// the same process, all running across a dump and restore. It follows
// the fixtures' protocol: START pid, READY pid nonce once the client is
// part-way, then (after SIGUSR2) PASS pid nonce when everything finished
// correctly on the same connection.
package main

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	workers    = 8
	chain      = 300000
	roundTrips = 3000
)

func hashChain(seed int) string {
	h := sha256.Sum256([]byte(strconv.Itoa(seed)))
	for i := 0; i < chain; i++ {
		h = sha256.Sum256(h[:])
	}
	return hex.EncodeToString(h[:])
}

func fail(format string, a ...any) {
	fmt.Printf("FAIL "+format+"\n", a...)
	os.Exit(1)
}

func main() {
	usr2 := make(chan os.Signal, 1)
	signal.Notify(usr2, syscall.SIGUSR2)
	var nb [8]byte
	_, _ = rand.Read(nb[:])
	nonce := hex.EncodeToString(nb[:])
	pid := os.Getpid()
	fmt.Println("START", pid)

	results := make([]string, workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() { defer wg.Done(); results[i] = hashChain(i) }()
	}

	var ticks atomic.Int64
	ticker := time.NewTicker(10 * time.Millisecond)
	go func() {
		for range ticker.C {
			ticks.Add(1)
		}
	}()
	pending := time.AfterFunc(time.Hour, func() { fail("hour timer fired") })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail("listen: %v", err)
	}
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					n, _ := strconv.Atoi(line[:len(line)-1])
					fmt.Fprintf(c, "%d\n", n*2+1)
				}
			}()
		}
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		fail("dial: %v", err)
	}
	local := conn.LocalAddr().String()
	progress := make(chan int, 1)
	clientDone := make(chan error, 1)
	go func() {
		r := bufio.NewReader(conn)
		for i := 0; i < roundTrips; i++ {
			if _, err := fmt.Fprintf(conn, "%d\n", i); err != nil {
				clientDone <- err
				return
			}
			line, err := r.ReadString('\n')
			if err != nil {
				clientDone <- err
				return
			}
			if got, _ := strconv.Atoi(line[:len(line)-1]); got != i*2+1 {
				clientDone <- fmt.Errorf("round trip %d: got %d", i, got)
				return
			}
			if i == 200 {
				progress <- i
			}
			time.Sleep(time.Millisecond)
		}
		clientDone <- nil
	}()
	<-progress
	fmt.Println("READY", pid, nonce)
	<-usr2

	if err := <-clientDone; err != nil {
		fail("client: %v", err)
	}
	if conn.LocalAddr().String() != local || accepted.Load() != 1 {
		fail("connection changed: %s (was %s), %d accepted", conn.LocalAddr(), local, accepted.Load())
	}
	wg.Wait()
	for i := range workers {
		if results[i] != hashChain(i) {
			fail("worker %d result differs", i)
		}
	}
	before := ticks.Load()
	time.Sleep(100 * time.Millisecond)
	if ticks.Load() <= before {
		fail("ticker stopped")
	}
	if !pending.Stop() {
		fail("pending timer lost")
	}
	fmt.Println("PASS", pid, nonce)
}
