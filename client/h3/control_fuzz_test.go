package h3

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/quic-go/quic-go/quicvarint"
)

// controlStream frames a control stream: the stream type, then frames.
func controlStream(frames ...[]byte) []byte {
	b := []byte{streamTypeControl}
	for _, f := range frames {
		b = append(b, f...)
	}
	return b
}

func frame(typ uint64, payload []byte) []byte {
	b := quicvarint.Append(nil, typ)
	b = quicvarint.Append(b, uint64(len(payload)))
	return append(b, payload...)
}

func settingsFrame(kv ...uint64) []byte {
	var p []byte
	for _, v := range kv {
		p = quicvarint.Append(p, v)
	}
	return frame(frameTypeSettings, p)
}

func TestReadControl(t *testing.T) {
	tests := []struct {
		name      string
		stream    []byte
		settings  *peerSettings
		goAway    bool
		frameCode bool // ends with a protocol error, not the stream's end
	}{
		{"settings", controlStream(settingsFrame(settingH3Datagram, 1, settingExtendedConnect, 1)), &peerSettings{true, true}, false, false},
		{"unknown settings and frames", controlStream(settingsFrame(0x1f*7+0x21, 5), frame(0x21, []byte("grease"))), &peerSettings{}, false, false},
		{"goaway", controlStream(settingsFrame(), frame(frameTypeGoAway, []byte{0})), &peerSettings{}, true, false},
		{"first frame not settings", controlStream(frame(frameTypeGoAway, []byte{0})), nil, false, true},
		{"second settings", controlStream(settingsFrame(), settingsFrame()), &peerSettings{}, false, true},
		{"truncated settings", controlStream([]byte{frameTypeSettings, 2, 0x33}), nil, false, false},
		{"odd settings", controlStream(settingsFrame(settingH3Datagram)), nil, false, true},
		{"huge frame", controlStream(settingsFrame(), quicvarint.Append([]byte{0x21}, maxControlFrame+1)), &peerSettings{}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got *peerSettings
			var goAway bool
			err := readControl(bufio.NewReader(bytes.NewReader(tt.stream)),
				func(s peerSettings) { got = &s }, func() { goAway = true })
			var fe *frameError
			if errors.As(err, &fe) != tt.frameCode {
				t.Errorf("error %v, protocol error wanted: %v", err, tt.frameCode)
			}
			if !tt.frameCode && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("error %v, want the stream's end", err)
			}
			if (got == nil) != (tt.settings == nil) || got != nil && *got != *tt.settings {
				t.Errorf("settings %+v, want %+v", got, tt.settings)
			}
			if goAway != tt.goAway {
				t.Errorf("goAway %v, want %v", goAway, tt.goAway)
			}
		})
	}
}

// FuzzReadControl: any control stream ends in an error (the stream's end or
// a protocol error), never a panic; SETTINGS are reported at most once per
// frame and only as the first frame.
func FuzzReadControl(f *testing.F) {
	f.Add(controlStream(settingsFrame(settingH3Datagram, 1, settingExtendedConnect, 1), frame(frameTypeGoAway, []byte{4})))
	f.Add(controlStream(settingsFrame(0x21, 1<<62-1), frame(0x21, nil)))
	f.Add(controlStream(frame(frameTypeGoAway, nil)))
	f.Add(controlStream([]byte{frameTypeSettings, 0x80}))
	f.Fuzz(func(t *testing.T, stream []byte) {
		calls := 0
		err := readControl(bufio.NewReader(bytes.NewReader(stream)), func(peerSettings) { calls++ }, func() {
			if calls == 0 {
				t.Fatal("GOAWAY reported before SETTINGS")
			}
		})
		if err == nil {
			t.Fatal("readControl returned nil")
		}
		if calls > 1 {
			t.Fatalf("SETTINGS reported %d times", calls)
		}
	})
}
