package geohint

import "testing"

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Hint
		ok   bool
	}{
		{"u4pruyd-GB", Hint{"u4pruyd", "GB"}, true},
		{`"u4pruyd"`, Hint{"u4pruyd", ""}, true},
		{`"u4pruyd-gb"`, Hint{"u4pruyd", "GB"}, true},
		{" U4PRUYD ", Hint{"u4pruyd", ""}, true},
		{"", Hint{}, false},
		{`""`, Hint{}, false},
		{"u4pruyd-", Hint{}, false},
		{"u4pruyd-GBR", Hint{}, false},
		{"u4pruyda", Hint{}, false},      // 'a' is not in the alphabet
		{"0123456789bcd", Hint{}, false}, // 13 characters
		{`"u4pruyd`, Hint{}, false},      // unbalanced quote
		{"u4pruyd-G1", Hint{}, false},    // country not letters
		{"u4pruyd-GB-x", Hint{}, false},  // trailing junk
		{"u4pr;uyd", Hint{}, false},      // parameters are not ours
	} {
		got, err := Parse(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
