package h3

import "bufio"

// ReadControl reads a server's HTTP/3 control stream, its stream type
// first: SETTINGS, then GOAWAY and frames to ignore, until the stream ends
// or breaks the protocol (an error to close the connection with). It calls
// onSettings once with what the proxy offers tunnels and onGoAway for each
// GOAWAY. It is for clients that drive an http3.RawClientConn themselves
// and read the connection's datagrams without http3's 32-deep queue per
// stream (quic-go#5799), as this package's Client does and masque-client
// vpn (CONNECT-IP) does too.
func ReadControl(r *bufio.Reader, onSettings func(extendedConnect, datagrams bool), onGoAway func()) error {
	return readControl(r, func(s peerSettings) { onSettings(s.extendedConnect, s.datagrams) }, onGoAway)
}
