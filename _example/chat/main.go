// Command chat is a chat page over a fake language model, streamed with
// package llm:
//
//   - POST /v1/chat/completions is OpenAI-compatible (streaming or not), so
//     any OpenAI client can be pointed at http://localhost:1337/v1;
//   - the page's own answers are resumable: each runs detached from the
//     request and is published to a broker topic, so reloading the page
//     mid-answer continues it, a second tab follows it, and the stop
//     button ends it, on whichever tab.
//
// The model needs no network: it writes a deterministic answer (from -seed
// and the question) a token at a time, with a model's pauses.
//
//	go run ./_example/chat
//
// then open http://localhost:1337, or try
//
//	curl -N localhost:1337/v1/chat/completions -d '{"model":"fake","stream":true,"messages":[{"role":"user","content":"Hi"}]}'
package main

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"flag"
	"log"
	"net"
	"net/http"
	"os/signal"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gin-sse/sse"
	"github.com/gin-sse/sse/llm"
)

//go:embed index.html
var page []byte

// chatRequest is the part of an OpenAI chat completion request the fake
// model reads.
type chatRequest struct {
	Model    string `json:"model"`
	Messages []struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"messages"`
	Stream        bool `json:"stream"`
	StreamOptions struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

// openAIError answers with an error in OpenAI's shape.
func openAIError(c *gin.Context, status int, msg string) {
	c.JSON(status, gin.H{"error": gin.H{"message": msg, "type": "invalid_request_error", "param": nil, "code": nil}})
}

func main() {
	addr := flag.String("addr", "localhost:1337", "listen address")
	seed := flag.Uint64("seed", 1, "the fake model's seed: the same seed and question give the same answer")
	speed := flag.Float64("speed", 1, "how much faster than a real model the fake one writes")
	debug := flag.Bool("debug", false, "gin debug mode and request logging")
	flag.Parse()
	if !*debug {
		gin.SetMode(gin.ReleaseMode)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	m := &model{seed: *seed, speed: *speed}
	b, err := sse.NewBroker()
	if err != nil {
		log.Fatal(err)
	}
	answers := llm.NewAnswers(b, llm.OpenAIChat, llm.WithModel(modelName))

	r := gin.New()
	r.Use(gin.Recovery())
	if *debug {
		r.Use(gin.Logger())
	}
	_ = r.SetTrustedProxies(nil)
	r.GET("/", func(c *gin.Context) { c.Data(http.StatusOK, "text/html; charset=utf-8", page) })

	// The OpenAI-compatible endpoint: one request, one answer.
	r.POST("/v1/chat/completions", sse.Middleware(), func(c *gin.Context) {
		var req chatRequest
		if err := c.ShouldBindJSON(&req); err != nil {
			openAIError(c, http.StatusBadRequest, "invalid JSON body: "+err.Error())
			return
		}
		if len(req.Messages) == 0 {
			openAIError(c, http.StatusBadRequest, "messages must not be empty")
			return
		}
		question := req.Messages[len(req.Messages)-1].Content
		if !req.Stream {
			text, usage, err := m.complete(c.Request.Context(), question)
			if err != nil {
				return // the client left
			}
			c.JSON(http.StatusOK, gin.H{
				"id": "chatcmpl-" + randomID(), "object": "chat.completion", "created": time.Now().Unix(), "model": modelName,
				"choices": []gin.H{{"index": 0, "message": gin.H{"role": "assistant", "content": text}, "logprobs": nil, "finish_reason": "stop"}},
				"usage":   gin.H{"prompt_tokens": usage.InputTokens, "completion_tokens": usage.OutputTokens, "total_tokens": usage.InputTokens + usage.OutputTokens},
			})
			return
		}
		err := llm.Stream(c, llm.OpenAIChat, m.generator(question),
			llm.WithModel(modelName), llm.WithUsageChunk(req.StreamOptions.IncludeUsage))
		if err != nil && !errors.Is(err, sse.ErrClientGone) {
			log.Printf("chat completion: %v", err)
		}
	})

	// The page's resumable answers.
	r.POST("/answers", func(c *gin.Context) {
		var req struct {
			Question string `json:"question" binding:"required,max=4000"`
		}
		if err := c.ShouldBindJSON(&req); err != nil {
			c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
			return
		}
		a, err := answers.Start(c.Request.Context(), randomID(), m.generator(req.Question))
		if err != nil {
			c.JSON(http.StatusServiceUnavailable, gin.H{"error": err.Error()})
			return
		}
		c.JSON(http.StatusOK, a)
	})
	r.GET("/answers/:id", answers.Handler("id"))
	r.POST("/answers/:id/stop", func(c *gin.Context) {
		if err := answers.Stop(c.Request.Context(), c.Param("id")); err != nil {
			c.JSON(http.StatusServiceUnavailable, gin.H{"error": err.Error()})
			return
		}
		c.Status(http.StatusNoContent)
	})

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	// No WriteTimeout: it would end every stream.
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second}
	srv.RegisterOnShutdown(func() { _ = b.Shutdown(context.Background()) })
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Printf("chat example on http://%s", ln.Addr())

	select {
	case err := <-served:
		log.Fatal(err)
	case <-ctx.Done():
	}
	stop()
	log.Print("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Printf("shutdown: %v", err)
	}
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
