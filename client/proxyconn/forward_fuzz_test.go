package proxyconn

import (
	"net"
	"testing"

	"github.com/masqued/masqued/masque/quicproxy"
)

// FuzzForwarder drives a tunnel's forwarded-mode state with what a proxy and
// a target control: the proxy's capsules, the packets read from the tunnel
// (whose long headers give the target's CID length), packets forwarded to
// the client's VCIDs, and the inner connection's own packets and new CIDs.
// Whatever comes, nothing panics, the registrations stay bounded, and every
// route is a client CID's whose VCID the client accepted.
//
// The input is a list of operations, each an opcode byte, a length byte and
// that many bytes of argument.
func FuzzForwarder(f *testing.F) {
	cid := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	vcid := []byte{0x81, 2, 3, 4, 5, 6, 7, 8, 9}
	op := func(code byte, arg ...byte) []byte { return append([]byte{code, byte(len(arg))}, arg...) }
	capsuleOp := func(c quicproxy.Capsule) []byte {
		v := c.Append(nil)[4:] // the type is 4 bytes, the length 1 here
		return op(0, append([]byte{byte(c.Type - quicproxy.TypeRegisterClientCID)}, v[1:]...)...)
	}
	long := append(append([]byte{0xc0, 0, 0, 0, 1, 8}, cid...), append([]byte{8}, cid...)...)
	short := append(append([]byte{0x40}, cid...), make([]byte, 32)...)
	f.Add(op(1))
	f.Add(join(op(1), op(2, long...), op(3, short...),
		capsuleOp(quicproxy.Capsule{Type: quicproxy.TypeAckTargetCID, CID: cid, VCID: vcid}),
		op(3, short...)))
	f.Add(join(op(1), capsuleOp(quicproxy.Capsule{Type: quicproxy.TypeMaxConnectionIDs, MaxSeq: 20}),
		op(1), op(1), op(4, short...)))
	f.Add(join(capsuleOp(quicproxy.Capsule{Type: quicproxy.TypeCloseClientCID, CID: cid}),
		capsuleOp(quicproxy.Capsule{Type: quicproxy.TypeCloseTargetCID, CID: cid})))
	f.Fuzz(func(t *testing.T, data []byte) {
		sock := &discardSocket{testSocket{route: map[string]*ForwardRoute{}}}
		scramble, unscramble := newScrambler(t)
		u := NewUDPConn(nil, nil, nil, &net.UDPAddr{})
		u.EnableForwarding(Forwarding{Socket: sock, Scramble: scramble, Unscramble: unscramble})
		fw := u.fwd
		for len(data) >= 2 {
			code, n := data[0], int(data[1])
			data = data[2:]
			arg := data[:min(n, len(data))]
			data = data[len(arg):]
			switch code % 5 {
			case 0: // a capsule from the proxy: type offset, value
				if len(arg) > 0 {
					fw.handleCapsule(quicproxy.TypeRegisterClientCID+uint64(arg[0]%8), arg[1:])
				}
			case 1:
				if _, err := u.ConnectionIDGenerator().GenerateConnectionID(); err != nil {
					t.Fatal(err)
				}
			case 2:
				fw.sawPacket(arg)
			case 3:
				before := fw.sent.Load() + fw.dropped.Load()
				if fw.forward(arg) && fw.sent.Load()+fw.dropped.Load() != before+1 {
					t.Fatal("a packet taken for forwarding was neither sent nor dropped")
				}
			case 4: // a forwarded packet to every route
				sock.mu.Lock()
				routes := make([]*ForwardRoute, 0, len(sock.route))
				for _, r := range sock.route {
					routes = append(routes, r)
				}
				sock.mu.Unlock()
				for _, r := range routes {
					r.Deliver(arg)
				}
			}
		}
		fw.mu.Lock()
		defer fw.mu.Unlock()
		if len(fw.clientRegs) > maxRegistrations || len(fw.targetRegs) > maxRegistrations {
			t.Fatalf("%d client and %d target registrations, over %d", len(fw.clientRegs), len(fw.targetRegs), maxRegistrations)
		}
		for vcid, r := range sock.route {
			i := find(fw.clientRegs, r.cid)
			if i < 0 || fw.clientRegs[i].route != r || len(vcid) < len(r.cid) || vcid[0]&0x80 == 0 {
				t.Fatalf("route %x for %x: no live registration of it, or a VCID the client must refuse", vcid, r.cid)
			}
		}
	})
}

// discardSocket is a testSocket whose forwarded packets go nowhere.
type discardSocket struct{ testSocket }

func (*discardSocket) WriteForwarded([]byte) error { return nil }

func join(ops ...[]byte) []byte {
	var b []byte
	for _, o := range ops {
		b = append(b, o...)
	}
	return b
}
