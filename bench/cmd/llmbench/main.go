// Command llmbench measures package llm: N concurrent answers streamed in
// the OpenAI Chat dialect, each at a model's pace of R tokens a second,
// with the default coalescing and with coalescing off. It starts itself as
// the server process (so that the server's CPU time is its own), opens the
// streams, checks every stream got its whole answer in order, and prints
// a Markdown table: tokens delivered per second, events written per token,
// the server's CPU time per token and its CPU use.
//
//	go build -o bin/ ./cmd/llmbench && bin/llmbench -streams 1000 -rate 50 -seconds 10
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"

	sse "github.com/gin-sse/sse"
	"github.com/gin-sse/sse/bench/internal/load"
	"github.com/gin-sse/sse/llm"
)

func main() {
	serve := flag.String("serve", "", "run as the server on this address (used by the driver)")
	streams := flag.Int("streams", 1000, "concurrent answers")
	rate := flag.Int("rate", 50, "tokens per second of each answer")
	seconds := flag.Int("seconds", 10, "length of each answer in seconds")
	flag.Parse()
	if *serve != "" {
		server(*serve)
		return
	}
	tokens := *rate * *seconds
	fmt.Printf("| coalescing | streams | tokens/s each | tokens delivered | tokens/s (all) | events per token | server CPU per token | server CPU | delivery |\n")
	fmt.Printf("|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
	ok := true
	for _, c := range []struct{ name, query string }{{"default (50 ms, 4 KiB)", "on"}, {"off", "off"}} {
		r := run(*streams, *rate, tokens, c.query)
		delivery := "ok"
		if r.err != nil {
			delivery = r.err.Error()
			ok = false
		}
		fmt.Printf("| %s | %d | %d | %d | %.0f | %.2f | %.2f µs | %.0f%% of a core | %s |\n",
			c.name, *streams, *rate, r.tokens, float64(r.tokens)/r.wall.Seconds(), float64(r.events)/float64(max(r.tokens, 1)),
			float64(r.cpu.Nanoseconds())/1e3/float64(max(r.tokens, 1)), 100*r.cpu.Seconds()/r.wall.Seconds(), delivery)
	}
	if !ok {
		os.Exit(1)
	}
}

// server streams answers of n tokens "t0 t1 ..." at rate tokens/s.
func server(addr string) {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.POST("/chat", sse.Middleware(), func(c *gin.Context) {
		var req struct {
			Tokens int `json:"tokens"`
			Rate   int `json:"rate"`
		}
		if err := c.ShouldBindJSON(&req); err != nil || req.Rate <= 0 {
			c.JSON(400, gin.H{"error": "bad request"})
			return
		}
		var opts []llm.Option
		if c.Query("coalesce") == "off" {
			opts = append(opts, llm.WithCoalesce(0, 0))
		}
		_ = llm.Stream(c, llm.OpenAIChat, func(ctx context.Context, out *llm.Output) error {
			t := time.NewTicker(time.Second / time.Duration(req.Rate))
			defer t.Stop()
			for i := range req.Tokens {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-t.C:
				}
				if err := out.Text("t" + strconv.Itoa(i) + " "); err != nil {
					return err
				}
			}
			return nil
		}, opts...)
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("listening")
	log.Fatal(http.Serve(ln, r))
}

type result struct {
	tokens, events int64
	wall, cpu      time.Duration
	err            error
}

// run starts a server, opens n streams of tokens tokens each and reads
// them to their end.
func run(n, rate, tokens int, coalesce string) result {
	addr, err := load.FreeAddr()
	if err != nil {
		return result{err: err}
	}
	srv := exec.Command(os.Args[0], "-serve", addr)
	out, _ := srv.StdoutPipe()
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		return result{err: err}
	}
	defer func() {
		_ = srv.Process.Signal(syscall.SIGTERM)
		_ = srv.Wait()
	}()
	if line, _ := bufio.NewReader(out).ReadString('\n'); !strings.HasPrefix(line, "listening") {
		return result{err: errors.New("the server did not start")}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: 0, DisableCompression: true}}
	want := make([]string, tokens)
	for i := range want {
		want[i] = "t" + strconv.Itoa(i) + " "
	}
	wantText := strings.Join(want, "")
	body := fmt.Sprintf(`{"tokens":%d,"rate":%d}`, tokens, rate)

	var delivered, events atomic.Int64
	var firstErr error
	var mu sync.Mutex
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	cpu0, _ := load.ReadCPU(srv.Process.Pid)
	start := time.Now()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			res, err := client.Post("http://"+addr+"/chat?coalesce="+coalesce, "application/json", strings.NewReader(body))
			if err != nil {
				fail(err)
				return
			}
			defer res.Body.Close()
			dec := sse.NewDecoder(res.Body)
			var text strings.Builder
			chunks := 0
			for {
				ev, err := dec.Decode()
				if err != nil {
					fail(fmt.Errorf("stream ended early: %w", err))
					return
				}
				if ev.Data == "[DONE]" {
					break
				}
				var chunk struct {
					Choices []struct {
						Delta struct{ Content string } `json:"delta"`
					} `json:"choices"`
				}
				if err := json.Unmarshal([]byte(ev.Data), &chunk); err != nil {
					fail(err)
					return
				}
				if len(chunk.Choices) > 0 && chunk.Choices[0].Delta.Content != "" {
					chunks++
					text.WriteString(chunk.Choices[0].Delta.Content)
				}
			}
			if text.String() != wantText {
				fail(errors.New("a stream's text differs from its answer"))
				return
			}
			events.Add(int64(chunks)) // of complete streams only, as the tokens
			delivered.Add(int64(tokens))
		})
	}
	wg.Wait()
	wall := time.Since(start)
	cpu1, _ := load.ReadCPU(srv.Process.Pid)
	return result{tokens: delivered.Load(), events: events.Load(), wall: wall, cpu: time.Duration(cpu1 - cpu0), err: firstErr}
}
