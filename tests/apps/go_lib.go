// A Go library for a C program (go build -buildmode=c-shared): its runtime starts when the
// library is loaded, with threads of its own and the same preemption by thread id as a Go
// program's. runtimes_test's C program loads it; its dump is refused, naming the library.
package main

import "C"

import "runtime"

//export Collect
func Collect() C.int {
	runtime.GC()
	return 1
}

func main() {}
