// Package tun opens and configures Linux TUN devices, for CONNECT-IP's
// server (package iptunnel) and client (masque-client vpn): a device of its
// own, its addresses, MTU and routes. It needs CAP_NET_ADMIN, and says so
// when it is missing.
package tun

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrNoCapability is wrapped by the errors of Open and the Device's methods
// when the process lacks CAP_NET_ADMIN.
var ErrNoCapability = errors.New("needs CAP_NET_ADMIN: run as root, or grant the capability " +
	"(systemd AmbientCapabilities=CAP_NET_ADMIN, or setcap cap_net_admin+ep on the binary)")

// Device is a TUN device without packet information headers: each Read
// returns one IP packet and each Write takes one. Read and Write may be
// called concurrently; Close unblocks them.
type Device struct {
	f    *os.File
	name string
	link netlink.Link
}

// Open creates the TUN device name ("" lets the kernel pick tunN) in the
// calling thread's network namespace. It disappears when the Device is
// closed.
func Open(name string) (*Device, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENXIO) || errors.Is(err, unix.ENODEV) {
			return nil, fmt.Errorf("opening /dev/net/tun: %w (no TUN support: load the tun module, or give the container the device)", err)
		}
		return nil, wrapPerm("opening /dev/net/tun", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUN device name %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, wrapPerm(fmt.Sprintf("creating TUN device %q", name), err)
	}
	d := &Device{f: os.NewFile(uintptr(fd), "/dev/net/tun"), name: ifr.Name()}
	if d.link, err = netlink.LinkByName(d.name); err != nil {
		d.f.Close()
		return nil, fmt.Errorf("finding TUN device %s: %w", d.name, err)
	}
	return d, nil
}

func wrapPerm(doing string, err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%s: %w: %w", doing, err, ErrNoCapability)
	}
	return fmt.Errorf("%s: %w", doing, err)
}

// Name is the device's interface name.
func (d *Device) Name() string { return d.name }

// Up sets the device's MTU and addresses (each with its prefix length, so
// that the kernel routes the prefix to the device) and brings it up.
func (d *Device) Up(mtu int, addrs ...netip.Prefix) error {
	if err := netlink.LinkSetMTU(d.link, mtu); err != nil {
		return wrapPerm(fmt.Sprintf("setting MTU %d on %s", mtu, d.name), err)
	}
	for _, p := range addrs {
		a := &netlink.Addr{IPNet: ipNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD // a point-to-point link has no one to collide with
		}
		if err := netlink.AddrReplace(d.link, a); err != nil {
			return wrapPerm(fmt.Sprintf("adding address %s to %s", p, d.name), err)
		}
	}
	if err := netlink.LinkSetUp(d.link); err != nil {
		return wrapPerm(fmt.Sprintf("bringing %s up", d.name), err)
	}
	return nil
}

// AddRoute routes p to the device.
func (d *Device) AddRoute(p netip.Prefix) error {
	r := &netlink.Route{LinkIndex: d.link.Attrs().Index, Dst: ipNet(p.Masked()), Scope: netlink.SCOPE_LINK}
	if err := netlink.RouteReplace(r); err != nil {
		return wrapPerm(fmt.Sprintf("adding route %s dev %s", p, d.name), err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}

// Read reads one packet into b.
func (d *Device) Read(b []byte) (int, error) { return d.f.Read(b) }

// Write writes one packet.
func (d *Device) Write(b []byte) (int, error) { return d.f.Write(b) }

// Close removes the device and unblocks Read and Write.
func (d *Device) Close() error { return d.f.Close() }

// PinHost keeps host reachable the way it is now, whatever routes a tunnel
// device adds later: it copies the route the kernel chooses for host into a
// host route (/32 or /128). undo removes it. A VPN client pins its proxy so
// that the tunnel's own packets do not enter the tunnel.
func PinHost(host netip.Addr) (undo func() error, err error) {
	rs, err := netlink.RouteGet(host.AsSlice())
	if err != nil || len(rs) == 0 {
		return nil, fmt.Errorf("finding the route to %s: %w", host, err)
	}
	r := &netlink.Route{Dst: ipNet(netip.PrefixFrom(host, host.BitLen())), Gw: rs[0].Gw, LinkIndex: rs[0].LinkIndex, Src: rs[0].Src}
	if err := netlink.RouteReplace(r); err != nil {
		return nil, wrapPerm(fmt.Sprintf("pinning the route to %s", host), err)
	}
	return func() error { return netlink.RouteDel(r) }, nil
}
