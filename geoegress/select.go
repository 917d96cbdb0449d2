package geoegress

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/masqued/masqued/geoegress/geohint"
	"github.com/masqued/masqued/tunnel"
)

// Cell is where a client is, as coarse as the Selector keeps it: a country,
// its region and a geohash prefix. Everyone in one cell leaves from the same
// addresses. The zero Cell is "somewhere unknown" and takes the default pool.
// Cells are comparable values.
type Cell struct {
	country [2]byte
	region  [3]byte // the subdivision part of an ISO 3166-2 code
	geohash geohashText
}

// NewCell returns the cell of a client in country (ISO 3166-1 alpha-2),
// region (ISO 3166-2 of that country, or "") and geohash (or ""). Parts that
// are not well-formed are left out, and so are all parts after them.
func NewCell(country, region, geohash string) Cell {
	var c Cell
	country = strings.ToUpper(country)
	if !geohint.IsCountry(country) {
		return c
	}
	copy(c.country[:], country)
	if cc, sub, ok := strings.Cut(strings.ToUpper(region), "-"); ok && cc == country && isAlnum(sub, 1, 3) {
		copy(c.region[:], sub)
	}
	if geohint.Valid(geohash) {
		c.geohash = geohashFrom(geohash, len(geohash))
	}
	return c
}

// Country returns the cell's country code, or "".
func (c Cell) Country() string {
	if c.country[0] == 0 {
		return ""
	}
	return string(c.country[:])
}

// String is for tests and debugging; never log it beside a client address.
func (c Cell) String() string {
	var b strings.Builder
	b.WriteString(c.Country())
	if c.region[0] != 0 {
		b.WriteByte('-')
		b.Write(c.region[:regionLen(c.region)])
	}
	if c.geohash[0] != 0 {
		b.WriteByte('/')
		b.WriteString(c.geohash.String())
	}
	return b.String()
}

func regionLen(r [3]byte) int {
	for i, c := range r {
		if c == 0 {
			return i
		}
	}
	return len(r)
}

// Config configures a Selector.
type Config struct {
	// Entries are the egress addresses and where they serve, from ParseFeed.
	Entries []Entry
	// Key keys the hashes, so that nobody without it can tell which cells
	// share an address. At least 16 bytes.
	Key []byte
	// Precision is the number of geohash characters in a cell; 0 = 4, a
	// cell of about 39 × 20 km: local enough for local search results,
	// coarse enough to be shared.
	Precision int
	// Epoch is how long an IPv6 address derived from a prefix stays the
	// same for a cell; 0 = 24 hours.
	Epoch time.Duration
	// Now is the clock for epochs; nil = time.Now.
	Now func() time.Time
	// Registerer gets masqued_egress_selections_total{family, pool}, where
	// pool is the level that answered: geohash, region, country, default
	// or none. No label names a place. nil = not counted.
	Registerer prometheus.Registerer
}

// Pool levels, the pool label of masqued_egress_selections_total.
var poolLevels = [...]string{"geohash", "region", "country", "default", "none"}

const (
	levelGeohash = iota
	levelRegion
	levelCountry
	levelDefault
	levelNone
)

// Selector picks egress addresses for cells: from the pool of the most
// specific place that has addresses of the family (cell, then region, then
// country, then the default pool), by rendezvous hashing keyed with a secret.
// One cell maps to one stable address, cells spread evenly over a pool, and
// adding an address to a pool of n moves only about 1/(n+1) of its cells.
// A Selector is immutable and safe for concurrent use.
type Selector struct {
	entries   []Entry
	key       [sha256.Size]byte
	precision int
	epoch     time.Duration
	now       func() time.Time
	selected  [2][len(poolLevels)]prometheus.Counter // [v4, v6][level]; nil when not counted
	pools     map[Cell]*pool                         // cells, regions and countries; see poolKeys
	placed    map[geohashText]map[[2]byte]struct{}   // feed geohashes: their countries
	def       pool
}

// pool is the egress candidates of one place, by family.
type pool struct{ v4, v6 []candidate }

// candidate is one address (IPv4) or prefix (IPv6) to choose among.
type candidate struct {
	prefix netip.Prefix
	id     uint64 // keyed hash of the prefix, its rendezvous identity
}

// NewSelector returns a Selector for c.
func NewSelector(c Config) (*Selector, error) {
	if len(c.Key) < 16 {
		return nil, errors.New("geoegress: the key must have at least 16 bytes")
	}
	if len(c.Entries) == 0 {
		return nil, errors.New("geoegress: no egress addresses")
	}
	s := &Selector{
		entries:   slices.Clone(c.Entries),
		key:       sha256.Sum256(c.Key),
		precision: c.Precision,
		epoch:     c.Epoch,
		now:       c.Now,
		pools:     map[Cell]*pool{},
		placed:    map[geohashText]map[[2]byte]struct{}{},
	}
	if s.precision == 0 {
		s.precision = 4
	}
	if s.precision < 1 || s.precision > geohint.MaxLen {
		return nil, fmt.Errorf("geoegress: precision %d is not between 1 and %d", s.precision, geohint.MaxLen)
	}
	if s.epoch == 0 {
		s.epoch = 24 * time.Hour
	}
	if s.epoch < 0 {
		return nil, errors.New("geoegress: negative epoch")
	}
	if s.now == nil {
		s.now = time.Now
	}
	if c.Registerer != nil {
		vec := prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "masqued_egress_selections_total", Help: "Egress addresses chosen, by family and by the pool level that had one.",
		}, []string{"family", "pool"})
		if err := c.Registerer.Register(vec); err != nil {
			return nil, err
		}
		for f, family := range []string{"ipv4", "ipv6"} {
			for l, level := range poolLevels {
				s.selected[f][l] = vec.WithLabelValues(family, level)
			}
		}
	}
	var all, unplaced pool
	for _, e := range c.Entries {
		cands := s.candidates(e.Prefix)
		all.add(cands)
		if e.Country == "" {
			unplaced.add(cands)
			continue
		}
		if e.Geohash != "" {
			g := geohashFrom(e.Geohash, len(e.Geohash))
			if s.placed[g] == nil {
				s.placed[g] = map[[2]byte]struct{}{}
			}
			s.placed[g][[2]byte([]byte(e.Country))] = struct{}{}
		}
		for _, k := range poolKeys(e) {
			p := s.pools[k]
			if p == nil {
				p = &pool{}
				s.pools[k] = p
			}
			p.add(cands)
		}
	}
	s.def = unplaced
	if len(unplaced.v4)+len(unplaced.v6) == 0 {
		s.def = all
	}
	return s, nil
}

// FeedHandler serves the selector's pools as a geofeed (RFC 8805), for GET
// /.well-known/geofeed.csv or wherever it is mounted, so that geolocation
// providers place each egress address where its clients are.
func (s *Selector) FeedHandler() http.Handler { return feedHandler(s.entries) }

// inPools reports whether a is in one of the egress prefixes.
func (s *Selector) inPools(a netip.Addr) bool {
	for _, e := range s.entries {
		if e.Prefix.Contains(a) {
			return true
		}
	}
	return false
}

// poolKeys returns the pools that e's addresses belong to: its country, its
// region and its cell, each keyed by a Cell with only those parts set.
func poolKeys(e Entry) []Cell {
	country := NewCell(e.Country, "", "")
	keys := []Cell{country}
	if e.Region != "" {
		keys = append(keys, NewCell(e.Country, e.Region, ""))
	}
	if e.Geohash != "" {
		keys = append(keys, NewCell(e.Country, "", e.Geohash))
	}
	return keys
}

func (p *pool) add(cands []candidate) {
	for _, c := range cands {
		if c.prefix.Addr().Is4() {
			p.v4 = append(p.v4, c)
		} else {
			p.v6 = append(p.v6, c)
		}
	}
}

// candidates expands an IPv4 prefix into its addresses, each a candidate of
// its own; an IPv6 prefix is one candidate whose host part is derived per
// cell.
func (s *Selector) candidates(p netip.Prefix) []candidate {
	if p.Addr().Is6() {
		return []candidate{{prefix: p, id: s.candidateID(p.Addr())}}
	}
	var out []candidate
	for a := p.Addr(); p.Contains(a); a = a.Next() {
		out = append(out, candidate{prefix: netip.PrefixFrom(a, 32), id: s.candidateID(a)})
	}
	return out
}

func (s *Selector) candidateID(a netip.Addr) uint64 {
	var b [sha256.Size + 1 + 16]byte
	copy(b[:], s.key[:])
	b[sha256.Size] = 'c'
	a16 := a.As16()
	copy(b[sha256.Size+1:], a16[:])
	h := sha256.Sum256(b[:])
	return binary.LittleEndian.Uint64(h[:])
}

// Select returns the egress source addresses for a client in cell c: one per
// family, the zero Addr for a family that no pool has. A prefix-derived
// IPv6 address sets FreeBind, since such addresses are routed to the host
// rather than configured on it. Select does not allocate.
func (s *Selector) Select(c Cell) tunnel.Source {
	c.geohash = c.geohash.prefix(s.precision)
	// The cell, keyed: what the rendezvous weights of its candidates derive
	// from. A geohash places the client better than a region does (and a
	// hint may move it out of its address's region): with one, the region
	// stays out of the key, so that everyone in the geohash cell agrees.
	var in [sha256.Size + 1 + 2 + 3 + geohint.MaxLen + 8]byte
	copy(in[:], s.key[:])
	in[sha256.Size] = 'r'
	cb := in[sha256.Size+1:]
	copy(cb, c.country[:])
	if c.geohash[0] == 0 {
		copy(cb[2:], c.region[:])
	}
	copy(cb[5:], c.geohash[:])
	digest := sha256.Sum256(in[:len(in)-8])
	seed := binary.LittleEndian.Uint64(digest[:])

	var src tunnel.Source
	if best, ok := rendezvous(s.lookupCounted(c, true), seed); ok {
		src.IPv4 = best.prefix.Addr()
	}
	if best, ok := rendezvous(s.lookupCounted(c, false), seed); ok {
		src.IPv6 = best.prefix.Addr()
		if best.prefix.Bits() < 128 {
			in[sha256.Size] = '6'
			binary.LittleEndian.PutUint64(in[len(in)-8:], uint64(s.now().UnixNano()/int64(s.epoch)))
			src.IPv6 = withHost(best.prefix, sha256.Sum256(in[:]))
			src.FreeBind = true
		}
	}
	return src
}

// lookup returns the candidates of one family (v4 or not) in the most
// specific pool that has any: the cell's longest geohash prefix with a pool,
// then its region, its country, and the default pool.
// lookupCounted is lookup, counted by level.
func (s *Selector) lookupCounted(c Cell, v4 bool) []candidate {
	cs, level := s.lookup(c, v4)
	f := 1
	if v4 {
		f = 0
	}
	if ctr := s.selected[f][level]; ctr != nil {
		ctr.Inc()
	}
	return cs
}

func (s *Selector) lookup(c Cell, v4 bool) ([]candidate, int) {
	family := func(p *pool) []candidate {
		if p == nil {
			return nil
		}
		if v4 {
			return p.v4
		}
		return p.v6
	}
	if c.country[0] != 0 {
		k := Cell{country: c.country}
		for n := c.geohash.len(); n > 0; n-- {
			k.geohash = c.geohash.prefix(n)
			if cs := family(s.pools[k]); len(cs) > 0 {
				return cs, levelGeohash
			}
		}
		k.geohash = geohashText{}
		if c.region[0] != 0 {
			k.region = c.region
			if cs := family(s.pools[k]); len(cs) > 0 {
				return cs, levelRegion
			}
			k.region = [3]byte{}
		}
		if cs := family(s.pools[k]); len(cs) > 0 {
			return cs, levelCountry
		}
	}
	if cs := family(&s.def); len(cs) > 0 {
		return cs, levelDefault
	}
	return nil, levelNone
}

// rendezvous returns the candidate of highest weight for the cell whose
// keyed digest is seed (highest-random-weight hashing).
func rendezvous(cands []candidate, seed uint64) (candidate, bool) {
	var best candidate
	var bestW uint64
	for i, c := range cands {
		if w := mix(seed ^ c.id); i == 0 || w > bestW {
			best, bestW = c, w
		}
	}
	return best, len(cands) > 0
}

// mix is a 64-bit finaliser (Stafford's variant 13, as in SplitMix64): every
// input bit affects every output bit, so weights of distinct candidates are
// independent-looking even though the seed is shared.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// withHost fills the host bits of p from h, avoiding the all-zero host (the
// subnet-router anycast address, RFC 4291 §2.6.1).
func withHost(p netip.Prefix, h [sha256.Size]byte) netip.Addr {
	a := p.Addr().As16()
	hi, lo := binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])
	hhi, hlo := binary.BigEndian.Uint64(h[:8]), binary.BigEndian.Uint64(h[8:16])
	n := p.Bits()
	var mhi, mlo uint64 // host mask
	switch {
	case n >= 64:
		mlo = ^uint64(0) >> (n - 64)
	default:
		mhi, mlo = ^uint64(0)>>n, ^uint64(0)
	}
	if (hhi&mhi)|(hlo&mlo) == 0 {
		hlo |= 1
	}
	hi |= hhi & mhi
	lo |= hlo & mlo
	binary.BigEndian.PutUint64(a[:8], hi)
	binary.BigEndian.PutUint64(a[8:], lo)
	return netip.AddrFrom16(a)
}
