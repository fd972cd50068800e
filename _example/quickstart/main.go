// Command quickstart is a chat page: every message posted reaches every
// open page at once, through a broker.
package main

import (
	"flag"
	"log"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/gin-sse/sse"
)

func main() {
	addr := flag.String("addr", "localhost:8080", "listen address")
	flag.Parse()

	b, err := sse.NewBroker() // keeps the last 5 minutes of events (up to 64 MiB) for replay
	if err != nil {
		log.Fatal(err)
	}

	r := gin.Default()
	_ = r.SetTrustedProxies(nil) // no proxy in front: c.ClientIP() is the peer's address
	r.GET("/", func(c *gin.Context) {
		c.Data(http.StatusOK, "text/html; charset=utf-8", []byte(page))
	})
	// GET /events?topic=chat streams the events of topic "chat".
	r.GET("/events", b.Handler(sse.TopicsFromQuery("topic")))
	// POST /chat with text=hello publishes a "chat" event to topic "chat".
	r.POST("/chat", func(c *gin.Context) {
		text := c.PostForm("text")
		if text == "" {
			c.JSON(http.StatusBadRequest, gin.H{"error": "text is empty"})
			return
		}
		id, err := b.Publish(c.Request.Context(), "chat", sse.Event{Event: "chat", Data: text})
		if err != nil {
			c.JSON(http.StatusInternalServerError, gin.H{"error": err.Error()})
			return
		}
		c.JSON(http.StatusOK, gin.H{"id": id})
	})

	log.Printf("open http://%s", *addr)
	log.Fatal(r.Run(*addr))
}

// page listens for "chat" events and posts its form to /chat.
const page = `<!doctype html>
<title>gin-sse quick start</title>
<form><input name="text" autocomplete="off" autofocus> <button>Send</button></form>
<ul></ul>
<script>
const es = new EventSource("/events?topic=chat");
es.addEventListener("chat", (e) => {
  const li = document.createElement("li");
  li.textContent = e.data;
  document.querySelector("ul").append(li);
});
document.querySelector("form").onsubmit = (e) => {
  e.preventDefault();
  fetch("/chat", {method: "POST", body: new URLSearchParams(new FormData(e.target))});
  e.target.reset();
};
</script>
`
