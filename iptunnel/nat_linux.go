package iptunnel

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/masqued/masqued/internal/tun"
)

// nat is the source NAT of tunnelled packets, kept in the kernel's nftables:
// a table per family (named after the TUN device) whose postrouting chain
// rewrites a tunnel's address to its egress address by a map lookup (one
// element per tunnel, set when it opens, deleted when it ends), and
// masquerades the pool's other addresses (the outgoing interface's address),
// for tunnels without an egress address of their family. Conntrack then
// translates the replies back. The kernel does the per-packet work; the
// relay only adds and removes map elements.
type nat struct {
	mu     sync.Mutex
	c      *nftables.Conn // lasting: bound to the namespace it was made in
	tables []*nftables.Table
	maps   [2]*nftables.Set // IPv4, IPv6
}

func newNAT(name string, pools []netip.Prefix) (_ *nat, err error) {
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	n := &nat{c: c}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	for _, p := range pools {
		fam, offset, typ, nfproto, i := nftables.TableFamilyIPv4, uint32(12), nftables.TypeIPAddr, uint32(unix.NFPROTO_IPV4), 0
		if p.Addr().Is6() {
			fam, offset, typ, nfproto, i = nftables.TableFamilyIPv6, 8, nftables.TypeIP6Addr, unix.NFPROTO_IPV6, 1
		}
		t := &nftables.Table{Name: "masqued_" + name, Family: fam}
		// A table left by a process that did not exit cleanly goes first.
		c.AddTable(t)
		c.DelTable(t)
		c.AddTable(t)
		n.tables = append(n.tables, t)
		m := &nftables.Set{Table: t, Name: "egress", IsMap: true, KeyType: typ, DataType: typ}
		if err := c.AddSet(m, nil); err != nil {
			return nil, fmt.Errorf("nftables: %w", err)
		}
		n.maps[i] = m
		ch := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
		alen := uint32(p.Addr().BitLen() / 8)
		saddr := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: alen}
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			saddr,
			&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: m.Name, SetID: m.ID},
			&expr.NAT{Type: expr.NATTypeSourceNAT, Family: nfproto, RegAddrMin: 1},
		}})
		mask := netip.PrefixFrom(p.Addr(), p.Bits())
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			saddr,
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: alen, Mask: prefixMask(mask), Xor: make([]byte, alen)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Masked().Addr().AsSlice()},
			&expr.Masq{},
		}})
	}
	if err := c.Flush(); err != nil {
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("nftables: %w: %w", err, tun.ErrNoCapability)
		}
		return nil, fmt.Errorf("nftables: setting up source NAT: %w", err)
	}
	return n, nil
}

func prefixMask(p netip.Prefix) []byte {
	b := make([]byte, p.Addr().BitLen()/8)
	for i := range p.Bits() {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return b
}

func (n *nat) mapFor(a netip.Addr) *nftables.Set {
	if a.Is4() {
		return n.maps[0]
	}
	return n.maps[1]
}

// set makes packets from client leave from egress.
func (n *nat) set(client, egress netip.Addr) error {
	m := n.mapFor(client)
	if m == nil || egress.Is4() != client.Is4() {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.c.SetAddElements(m, []nftables.SetElement{{Key: client.AsSlice(), Val: egress.AsSlice()}}); err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if err := n.c.Flush(); err != nil {
		return fmt.Errorf("nftables: setting the egress address of a tunnel: %w", err)
	}
	return nil
}

// unset removes client's egress address.
func (n *nat) unset(client netip.Addr) error {
	m := n.mapFor(client)
	if m == nil {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.c.SetDeleteElements(m, []nftables.SetElement{{Key: client.AsSlice()}}); err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if err := n.c.Flush(); err != nil {
		return fmt.Errorf("nftables: removing the egress address of a tunnel: %w", err)
	}
	return nil
}

// close removes the tables.
func (n *nat) close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, t := range n.tables {
		n.c.DelTable(t)
	}
	err := n.c.Flush()
	return errors.Join(err, n.c.CloseLasting())
}
