// Package faults holds test suites that check the broker's central promise
// under faults and bad input; it has no non-test code.
//
// The fault-injection suite puts a TCP proxy between clients (package
// github.com/gin-sse/sse/client) and a broker; the proxy cuts connections
// at random byte counts (mid-event too), stalls and delays them, and the
// server is restarted mid-run. Every client must end with exactly the
// events of its topics, in the order the broker gave their ids, with no
// loss and no duplicate. The bad-input suite checks that malformed
// Last-Event-IDs, oversized headers, too many connections from one IP,
// clients that never read, unknown and unauthorised topics and wrong
// Accept headers each get their documented answer while a healthy client
// keeps being served, and that goroutines return to their baseline.
//
// The suites are bounded for CI; scale them up with
//
//	go test ./faults -v -args -faults.scale=10
//
// or FAULTS_SCALE=10 in the environment.
package faults
