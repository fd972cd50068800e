package sseredis_test

import (
	"errors"
	"log"

	"github.com/gin-gonic/gin"
	"github.com/gin-sse/sse"
	sseredis "github.com/gin-sse/sse/redis"
	"github.com/redis/go-redis/v9"
)

// A broker whose events go through Redis: run it on several servers with
// the same Redis and prefix.
func ExampleNew() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	b, err := sse.NewBroker(sse.WithBackend(sseredis.New(rdb, sseredis.WithPrefix("myapp:sse:"))))
	if err != nil {
		log.Fatal(err) // an invalid key prefix: the broker starts even while Redis is down
	}
	r := gin.Default()
	r.GET("/events", b.Handler(sse.TopicsFromQuery("topic")))
	r.POST("/kitchen", func(c *gin.Context) {
		id, err := b.Publish(c.Request.Context(), "kitchen", sse.Event{Event: "kitchen", Data: c.PostForm("state")})
		if errors.Is(err, sseredis.ErrUnavailable) {
			c.AbortWithStatus(503)
			return
		}
		c.JSON(200, gin.H{"id": id})
	})
	_ = r.Run(":8080")
}
