package runner

import (
	"strings"
	"testing"
)

func TestSpliceMarkdown(t *testing.T) {
	doc := "# Title\n\n" + BeginMarker + "\nold matrix\n" + EndMarker + "\n\nmore\n"
	got, err := SpliceMarkdown([]byte(doc), "new matrix\n")
	if err != nil {
		t.Fatal(err)
	}
	want := "# Title\n\n" + BeginMarker + "\n\nnew matrix\n\n" + EndMarker + "\n\nmore\n"
	if string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	again, err := SpliceMarkdown(got, "new matrix\n")
	if err != nil || string(again) != want {
		t.Fatalf("splicing twice: %q, %v", again, err)
	}
	for _, bad := range []string{"no markers", BeginMarker + " only", EndMarker + " before " + BeginMarker} {
		if _, err := SpliceMarkdown([]byte(bad), "x"); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestMarkdown checks the table's shape: a row per case that ran, an entry
// per client with a mark per server, and the failures listed.
func TestMarkdown(t *testing.T) {
	r := &Results{Cells: []Cell{
		{Case: "connect-tcp", Client: "curl", Server: "masqued", Status: Pass, Expected: Pass},
		{Case: "connect-tcp", Client: "curl", Server: "masque-go", Status: Unsupported, Expected: Unsupported},
		{Case: "bad-template", Client: "curl", Server: "masqued", Status: Fail, Expected: Pass, Detail: "proxy answered 404\nmore"},
		{Case: "bad-template", Client: "curl", Server: "masque-go", Status: Unsupported, Expected: Unsupported},
	}}
	var b strings.Builder
	r.Markdown(&b)
	md := b.String()
	for _, want := range []string{
		"| case | curl |\n",
		"| connect-tcp | ✓ − |\n",
		"| bad-template | ✕ − |\n",
		"- ✕ `bad-template/curl/masqued`: proxy answered 404\n",
		"masqued · masque-go",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("lacks %q:\n%s", want, md)
		}
	}
	if strings.Index(md, "connect-tcp |") > strings.Index(md, "bad-template |") {
		t.Errorf("cases out of the runner's order:\n%s", md)
	}
}
