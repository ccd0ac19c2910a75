//go:build cgo_app

// Built into go_app with -tags cgo_app: the runtime then starts through cgo, with a spare m
// that has no thread (needm's), and its threads are made by pthread_create.
package main

import "C"
