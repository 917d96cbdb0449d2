package geoegress

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/masqued/masqued/geoegress/geohint"
)

// Entry is one line of an egress geofeed (RFC 8805): a prefix of egress
// addresses and the place whose clients leave from it.
//
// The file has RFC 8805's columns, prefix,country,region,city,postal, and
// one of ours after them: the geohash of the cell the addresses serve. RFC
// 8805 §2.1.1 lets consumers ignore columns past the fifth, so the file we
// read is the geofeed we publish.
type Entry struct {
	Prefix  netip.Prefix // masked; IPv4 /20 or longer, IPv6 any length
	Country string       // ISO 3166-1 alpha-2, upper case; "" = the default pool
	Region  string       // ISO 3166-2 ("GB-ENG"), of Country; "" = none
	City    string       // free text, published as given
	Postal  string       // deprecated by RFC 8805, published as given
	Geohash string       // lower case; "" = the entry serves its region or country
}

// minIPv4Bits bounds how many addresses one IPv4 line expands to (4096):
// every IPv4 address is a candidate of its own in selection.
const minIPv4Bits = 20

// maxFeedLine bounds a line, so that a runaway file fails fast.
const maxFeedLine = 4096

// FeedError is a geofeed line that could not be used.
type FeedError struct {
	Line int
	Err  error
}

func (e *FeedError) Error() string {
	return "geofeed line " + strconv.Itoa(e.Line) + ": " + e.Err.Error()
}
func (e *FeedError) Unwrap() error { return e.Err }

// ParseFeed reads an egress geofeed. Blank lines and lines starting with '#'
// are skipped; prefixes must not overlap.
func ParseFeed(r io.Reader) ([]Entry, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), maxFeedLine)
	var entries []Entry
	lines := map[netip.Prefix]int{}
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		e, err := parseEntry(line)
		if err != nil {
			return nil, &FeedError{Line: n, Err: err}
		}
		lines[e.Prefix] = n
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading geofeed: %w", err)
	}
	sorted := slices.Clone(entries)
	slices.SortFunc(sorted, func(a, b Entry) int {
		return cmp.Or(a.Prefix.Addr().Compare(b.Prefix.Addr()), cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()))
	})
	// Sorted by address, any overlap shows between neighbours: a prefix
	// holding a later one holds everything in between.
	for i := 1; i < len(sorted); i++ {
		if a, b := sorted[i-1].Prefix, sorted[i].Prefix; a.Overlaps(b) {
			return nil, &FeedError{Line: max(lines[a], lines[b]), Err: fmt.Errorf("%s overlaps %s", b, a)}
		}
	}
	return entries, nil
}

func parseEntry(line string) (Entry, error) {
	f := strings.Split(line, ",")
	field := func(i int) string {
		if i < len(f) {
			return strings.TrimSpace(f[i])
		}
		return ""
	}
	var e Entry
	p, err := parsePrefix(field(0))
	if err != nil {
		return e, err
	}
	e.Prefix = p
	e.Country = strings.ToUpper(field(1))
	if e.Country != "" && !geohint.IsCountry(e.Country) {
		return e, fmt.Errorf("country %q is not an ISO 3166-1 alpha-2 code", field(1))
	}
	e.Region = strings.ToUpper(field(2))
	if e.Region != "" {
		cc, sub, ok := strings.Cut(e.Region, "-")
		if !ok || cc != e.Country || !isAlnum(sub, 1, 3) {
			return e, fmt.Errorf("region %q is not an ISO 3166-2 code of country %q", field(2), e.Country)
		}
	}
	e.City, e.Postal = field(3), field(4)
	if strings.ContainsAny(e.City+e.Postal, "\"\x00") {
		return e, errors.New("city and postal code must not hold quotes or NUL")
	}
	if gh := field(5); gh != "" {
		if !geohint.Valid(gh) {
			return e, fmt.Errorf("geohash %q is not 1 to 12 geohash characters", gh)
		}
		if e.Country == "" {
			return e, errors.New("a geohash needs a country")
		}
		e.Geohash = strings.ToLower(gh)
	}
	return e, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, errors.New("no prefix")
	}
	var p netip.Prefix
	var err error
	if strings.Contains(s, "/") {
		p, err = netip.ParsePrefix(s)
	} else {
		var a netip.Addr
		a, err = netip.ParseAddr(s)
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("prefix: %w", err)
	}
	a := p.Addr()
	switch {
	case a.Zone() != "":
		return netip.Prefix{}, fmt.Errorf("prefix %s has a zone", s)
	case a.Is4In6():
		return netip.Prefix{}, fmt.Errorf("prefix %s is IPv4-mapped: write it as IPv4", s)
	case p != p.Masked():
		return netip.Prefix{}, fmt.Errorf("prefix %s has host bits set (want %s)", s, p.Masked())
	case a.Is4() && p.Bits() < minIPv4Bits:
		return netip.Prefix{}, fmt.Errorf("IPv4 prefix %s is shorter than /%d", s, minIPv4Bits)
	}
	return p, nil
}

func isAlnum(s string, lo, hi int) bool {
	if len(s) < lo || len(s) > hi {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !(s[i] >= 'A' && s[i] <= 'Z' || s[i] >= '0' && s[i] <= '9') {
			return false
		}
	}
	return true
}

// appendFeed appends entries as geofeed CSV, with the geohash column.
func appendFeed(b []byte, entries []Entry) []byte {
	b = append(b, "# masqued egress geofeed (RFC 8805); column 6 is the geohash of the cell served\n"...)
	for _, e := range entries {
		b = e.Prefix.AppendTo(b)
		for _, f := range []string{e.Country, e.Region, e.City, e.Postal, e.Geohash} {
			b = append(b, ',')
			b = append(b, f...)
		}
		b = append(b, '\n')
	}
	return b
}

// feedHandler serves entries as a geofeed.
func feedHandler(entries []Entry) http.Handler {
	body := appendFeed(nil, entries)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=3600")
		http.ServeContent(w, r, "geofeed.csv", time.Time{}, bytes.NewReader(body))
	})
}
