package sse

import (
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// queryValueSeeds are raw queries with the key "k" in the forms
// url.ParseQuery treats specially.
var queryValueSeeds = []string{
	"",
	"k",
	"k=",
	"k=1",
	"a=1&k=2&k=3",
	"k=1;x&k=2",
	"a;b=1&k=2",
	"k=%zz&k=4",
	"%zz=1&k=5",
	"k=a%20b+c",
	"%6B=6",
	"k%3D=7&k=8",
	"+k=9&k=10",
	"&&k=11&",
	"k==12",
	"K=13",
	"k=%E2%82%AC",
}

func TestQueryValueMatchesParseQuery(t *testing.T) {
	for _, q := range queryValueSeeds {
		want, _ := url.ParseQuery(q)
		assert.Equal(t, want.Get("k"), queryValue(q, "k"), "query %q", q)
	}
	many := strings.Repeat("a=1&", maxQueryPairs) + "k=1"
	want, _ := url.ParseQuery(many)
	assert.Equal(t, want.Get("k"), queryValue(many, "k"), "a query over net/url's limit")
	assert.Equal(t, "1", queryValue(strings.Repeat("a=1&", maxQueryPairs-1)+"k=1", "k"), "a query at the limit")
}

func TestQueryValueAllocatesNothing(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		if queryValue("stream=t&topic=a&lastEventId=1hx-42", "lastEventId") != "1hx-42" {
			t.Fatal("lastEventId not found")
		}
	})
	assert.Zero(t, allocs)
}

func FuzzQueryValue(f *testing.F) {
	for _, q := range queryValueSeeds {
		f.Add(q, "k")
	}
	f.Fuzz(func(t *testing.T, q, key string) {
		if key == "" {
			return // readLastEventID never looks up an empty name
		}
		want, _ := url.ParseQuery(q)
		if got := queryValue(q, key); got != want.Get(key) {
			t.Fatalf("queryValue(%q, %q) = %q, ParseQuery gives %q", q, key, got, want.Get(key))
		}
	})
}
