// A Go app for runtimes_test: a table built at start-up, a ticker goroutine; after the input,
// goroutines that spin without a call until the main goroutine has run the GC 20 times. Only the
// runtime's preemption signals (tgkill on each thread's cached id) can stop them, so a restore
// that left the old ids in the runtime hangs here instead of answering.
package main

import (
	"bufio"
	"crypto/sha1"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var stop int32

// Loops without a call: the compiler puts no preemption check in it.
func spin() int {
	x := 0
	for atomic.LoadInt32(&stop) == 0 {
		x++
	}
	return x
}

func main() {
	table := make(map[int]string)
	for i := 0; i < 200000; i++ {
		h := sha1.Sum([]byte(strconv.Itoa(i)))
		table[i] = fmt.Sprintf("%x", h[:2])
	}
	done := make(chan int)
	go func() { t := time.NewTicker(5 * time.Millisecond); for range t.C { select { case <-done: return; default: } } }()
	fmt.Printf("ready pid=%d\n", os.Getpid())
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	n, _ := strconv.Atoi(strings.TrimSpace(line))
	var wg sync.WaitGroup
	spun := int32(0)
	// One spinner: more, on a 2-CPU machine, leave the GC's own goroutines only the slices
	// preemption gives them, and 20 collections take seconds.
	for g := 0; g < 1; g++ {
		wg.Add(1)
		go func() { defer wg.Done(); spin(); atomic.AddInt32(&spun, 1) }()
	}
	for i := 0; i < 20; i++ { runtime.GC(); _ = make([]byte, 1<<20) }
	atomic.StoreInt32(&stop, 1)
	wg.Wait()
	close(done)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("answer=%s spun=%d gc=%t\n", table[n], spun, ms.NumGC >= 20)
}
