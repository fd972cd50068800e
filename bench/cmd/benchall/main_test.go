package main

import (
	"testing"

	"github.com/gin-sse/sse/bench/internal/load"
)

func TestRoundRatios(t *testing.T) {
	res := func(impl string, eps float64) load.Result { return load.Result{Impl: impl, EventsPerSec: eps} }
	runs := []run{
		{Scenario: "d", Round: 1, Result: res("bare", 100)},
		{Scenario: "d", Round: 1, Result: res("gin-sse", 80)},
		{Scenario: "d", Round: 2, Result: res("gin-sse", 50)},
		{Scenario: "d", Round: 2, Result: res("bare", 100)},
		{Scenario: "d", Round: 3, Result: res("gin-sse", 90)}, // no bare run in this round
		{Scenario: "a", Round: 1, Result: res("bare", 1)},     // another scenario
		{Scenario: "a", Round: 1, Result: res("gin-sse", 9)},
	}
	failed := res("bare", 10)
	failed.Lost = 1
	runs = append(runs, run{Scenario: "d", Round: 4, Result: failed}, run{Scenario: "d", Round: 4, Result: res("gin-sse", 100)})

	lo, hi, ok := roundRatios(runs, "d", "gin-sse", "bare")
	if !ok || lo != 0.5 || hi != 0.8 {
		t.Fatalf("roundRatios = %v, %v, %v; want 0.5, 0.8, true (rounds 1 and 2 only)", lo, hi, ok)
	}
	if _, _, ok := roundRatios(runs, "b", "gin-sse", "bare"); ok {
		t.Fatal("a scenario without runs has no ratio")
	}
}
