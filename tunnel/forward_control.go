package tunnel

import (
	"crypto/rand"
	"fmt"
	"slices"

	"github.com/masqued/masqued/masque"
	"github.com/masqued/masqued/masque/quicproxy"
)

// The control side of forwarded mode: the connection ID capsules of
// draft-ietf-masque-quic-proxy on the tunnel's request stream. They arrive
// in the stream's capsule loop (udpRelay.fromCapsules), which also writes
// the answers: with forwarded mode the payloads travel as QUIC DATAGRAM
// frames, so nothing else writes the stream.

// errCapsule is a connection ID capsule that breaks the draft's rules; it
// ends the tunnel, as a malformed capsule does (RFC 9297 §3.3).
func errCapsule(format string, args ...any) error {
	return &masque.Error{Kind: masque.StatusHTTPRequestError, Details: fmt.Sprintf(format, args...)}
}

// start tells the client how many registrations it may make, before any
// capsule is read.
func (fw *Forwarding) start(relay *udpRelay) error {
	fw.relay.Store(relay)
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return fw.raiseLimitLocked(relay)
}

// end removes every mapping of the tunnel: nothing is forwarded for it
// once its relay has returned.
func (fw *Forwarding) end() {
	fw.relay.Store(nil)
	fw.acked.Store(nil)
	fw.mu.Lock()
	defer fw.mu.Unlock()
	for _, r := range fw.targets {
		fw.sock.removeRoute(r.vcid)
	}
	fw.targets, fw.clients = nil, nil
}

// handle acts on one connection ID capsule from the client.
func (fw *Forwarding) handle(typ uint64, value []byte) error {
	c, err := quicproxy.Parse(typ, value)
	if err != nil {
		return errCapsule("malformed capsule 0x%x: %v", typ, err)
	}
	relay := fw.relay.Load()
	if relay == nil {
		return nil
	}
	fw.mu.Lock()
	defer fw.mu.Unlock()
	switch typ {
	case quicproxy.TypeRegisterClientCID, quicproxy.TypeRegisterTargetCID:
		if fw.nextSeq > fw.maxSeq {
			return errCapsule("registration %d beyond MAX_CONNECTION_IDS %d", fw.nextSeq, fw.maxSeq)
		}
		fw.nextSeq++
		if typ == quicproxy.TypeRegisterClientCID {
			err = fw.registerClientLocked(relay, c.CID)
		} else {
			err = fw.registerTargetLocked(relay, c.CID)
		}
		if err != nil {
			return err
		}
		return fw.raiseLimitLocked(relay)
	case quicproxy.TypeAckClientVCID:
		for i := range fw.clients {
			if string(fw.clients[i].cid) == string(c.CID) && string(fw.clients[i].vcid) == string(c.VCID) {
				fw.clients[i].acked = true
			}
		}
		fw.publishLocked()
	case quicproxy.TypeCloseClientCID:
		fw.clients = slices.DeleteFunc(fw.clients, func(r clientReg) bool { return string(r.cid) == string(c.CID) })
		fw.publishLocked()
	case quicproxy.TypeCloseTargetCID:
		fw.targets = slices.DeleteFunc(fw.targets, func(r targetReg) bool {
			if string(r.cid) != string(c.CID) {
				return false
			}
			fw.sock.removeRoute(r.vcid)
			return true
		})
	default: // the proxy's own types: a client must not send them
		return errCapsule("capsule 0x%x is the proxy's to send", typ)
	}
	return nil
}

// registerClientLocked answers REGISTER_CLIENT_CID: a fresh VCID of the
// same length (so that the rewrite is in place), tagged and unlike the
// connection ID itself, or a CLOSE_CLIENT_CID where the connection ID is
// one no VCID can stand for or the tunnel has its fill of them.
func (fw *Forwarding) registerClientLocked(relay *udpRelay, cid []byte) error {
	cid = slices.Clone(cid)
	fw.clients = slices.DeleteFunc(fw.clients, func(r clientReg) bool { return string(r.cid) == string(cid) })
	if len(cid) == 0 || len(cid) > targetVCIDLen || len(fw.clients) >= maxRegistrations {
		fw.publishLocked()
		return fw.writeCapsule(relay, &quicproxy.Capsule{Type: quicproxy.TypeCloseClientCID, CID: cid})
	}
	vcid := make([]byte, len(cid))
	for {
		if _, err := rand.Read(vcid); err != nil {
			return err
		}
		vcid[0] |= 0x80
		if string(vcid) != string(cid) && !fw.clientVCIDTakenLocked(vcid) {
			break
		}
	}
	fw.clients = append(fw.clients, clientReg{cid: cid, vcid: vcid})
	fw.publishLocked()
	return fw.writeCapsule(relay, &quicproxy.Capsule{Type: quicproxy.TypeAckClientCID, CID: cid, VCID: vcid})
}

func (fw *Forwarding) clientVCIDTakenLocked(vcid []byte) bool {
	return slices.ContainsFunc(fw.clients, func(r clientReg) bool { return string(r.vcid) == string(vcid) })
}

// registerTargetLocked answers REGISTER_TARGET_CID: a fresh target VCID,
// routed on the socket to this tunnel, or CLOSE_TARGET_CID where the tunnel
// has its fill of them or the connection ID is longer than QUIC v1 allows.
// Registering a connection ID again replaces its VCID.
func (fw *Forwarding) registerTargetLocked(relay *udpRelay, cid []byte) error {
	cid = slices.Clone(cid)
	fw.targets = slices.DeleteFunc(fw.targets, func(r targetReg) bool {
		if string(r.cid) != string(cid) {
			return false
		}
		fw.sock.removeRoute(r.vcid)
		return true
	})
	if len(cid) > targetVCIDLen || len(fw.targets) >= maxRegistrations {
		return fw.writeCapsule(relay, &quicproxy.Capsule{Type: quicproxy.TypeCloseTargetCID, CID: cid})
	}
	vcid, err := fw.sock.newTargetVCID(&targetRoute{fw: fw, cid: cid})
	if err != nil {
		return err
	}
	fw.targets = append(fw.targets, targetReg{cid: cid, vcid: vcid})
	return fw.writeCapsule(relay, &quicproxy.Capsule{Type: quicproxy.TypeAckTargetCID, CID: cid, VCID: vcid})
}

// raiseLimitLocked keeps the client able to register: whenever fewer than
// maxRegistrations sequence numbers are left, it allows twice that many
// more. The registrations held at once stay bounded by the caps in the
// register methods.
func (fw *Forwarding) raiseLimitLocked(relay *udpRelay) error {
	if fw.maxSeq >= fw.nextSeq+maxRegistrations {
		return nil
	}
	fw.maxSeq = fw.nextSeq + 2*maxRegistrations
	return fw.writeCapsule(relay, &quicproxy.Capsule{Type: quicproxy.TypeMaxConnectionIDs, MaxSeq: fw.maxSeq})
}

// publishLocked makes the acknowledged client registrations what the
// target-to-client path sees.
func (fw *Forwarding) publishLocked() {
	var acked []clientReg
	for _, r := range fw.clients {
		if r.acked {
			acked = append(acked, r)
		}
	}
	if len(acked) == 0 {
		fw.acked.Store(nil)
		return
	}
	fw.acked.Store(&acked)
}

// writeCapsule writes c on the tunnel's stream.
func (fw *Forwarding) writeCapsule(relay *udpRelay, c *quicproxy.Capsule) error {
	_, err := relay.client.Write(c.Append(nil))
	return err
}
