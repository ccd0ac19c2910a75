// A Go app for runtimes_test: a table built at start-up, a ticker goroutine; after the input,
// CPU-bound goroutines while the GC runs, which needs the runtime's preemption signals. Its dump
// is refused (the runtime signals threads by the ids it cached); run cold it answers.
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
	"time"
)

func spin(n int) int {
	x := 0
	for i := 0; i < n; i++ {
		x = x*31 + i
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
	results := make([]int, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) { defer wg.Done(); results[g] = spin(300000000 + g) }(g)
	}
	for i := 0; i < 20; i++ { runtime.GC(); _ = make([]byte, 1<<20) }
	wg.Wait()
	close(done)
	fmt.Printf("answer=%s spun=%d threads=%d\n", table[n], results[0]&0xff, runtime.NumGoroutine())
}
