package h3proxy

import (
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// refusalDrain bounds how long a refused CONNECT's stream is read after the
// refusal went out, waiting for the client to end its side. A client reacts
// within a round trip; the bound only stops a client that never does from
// holding the stream.
const refusalDrain = 5 * time.Second

// refuse answers a tunnel request with err's status, Proxy-Status and
// message, then ends the stream gently.
//
// When a handler returns without having read the request to its end,
// http3 asks the client to stop sending (STOP_SENDING with H3_NO_ERROR,
// RFC 9114 §4.1.2) together with the response. For a CONNECT that is the
// tunnel's upstream, and Firefox 153 takes a STOP_SENDING on a tunnel stream
// for the tunnel failing before it reads the response: the page load then
// hangs instead of showing the 403 or 407. So a refused CONNECT's response
// is sent and its stream closed for writing first, and its request side is
// read until the client ends it (Firefox resets it once it read the
// response) or refusalDrain passes, and only then stopped.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, err error) {
	streamer, ok := w.(http3.HTTPStreamer)
	if r.Method != http.MethodConnect || !ok {
		s.front.WriteError(w, err)
		return
	}
	rw := &refusalWriter{ResponseWriter: w, streamer: streamer}
	s.front.WriteError(rw, err)
	if rw.str == nil {
		return // the stream broke; http3 cleans up
	}
	rw.str.Close()
	_ = rw.str.SetReadDeadline(time.Now().Add(refusalDrain))
	_, _ = io.Copy(io.Discard, rw.str)
	rw.str.CancelRead(quic.StreamErrorCode(http3.ErrCodeNoError)) // a no-op after EOF
}

var errStreamGone = errors.New("h3proxy: the refused request's stream broke")

// refusalWriter takes the stream over once the response header is written,
// so that the refusal's body goes out as DATA on a stream that http3 no
// longer ends itself.
type refusalWriter struct {
	http.ResponseWriter
	streamer http3.HTTPStreamer
	str      *http3.Stream
}

func (w *refusalWriter) WriteHeader(status int) {
	w.ResponseWriter.WriteHeader(status)
	w.str, _ = w.streamer.HTTPStream()
}

func (w *refusalWriter) Write(b []byte) (int, error) {
	if w.str == nil {
		return 0, errStreamGone
	}
	return w.str.Write(b)
}
