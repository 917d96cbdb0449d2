package privacypass

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
)

// Media types and the well-known path of RFC 9578.
const (
	DirectoryPath        = "/.well-known/private-token-issuer-directory"
	MediaTypeDirectory   = "application/private-token-issuer-directory"
	MediaTypeRequest     = "application/private-token-request"
	MediaTypeResponse    = "application/private-token-response"
	DefaultRequestPath   = "/token-request"
	MaxTokenRequestBytes = 1024 // the largest token request or response body read
)

// directoryJSON is the issuer directory (RFC 9578 §4).
type directoryJSON struct {
	RequestURI string         `json:"issuer-request-uri"`
	TokenKeys  []tokenKeyJSON `json:"token-keys"`
}

type tokenKeyJSON struct {
	Type      TokenType `json:"token-type"`
	Key       string    `json:"token-key"`
	NotBefore int64     `json:"not-before,omitempty"`
}

// Directory is a parsed issuer directory.
type Directory struct {
	RequestURI string
	Keys       []*PublicKey // in the issuer's order of preference
}

// ParseDirectory decodes an issuer directory. Keys of unsupported types are
// skipped; a malformed key of a supported type is an error.
func ParseDirectory(b []byte) (*Directory, error) {
	var dj directoryJSON
	if err := json.Unmarshal(b, &dj); err != nil {
		return nil, fmt.Errorf("%w issuer directory: %w", ErrMalformed, err)
	}
	d := &Directory{RequestURI: dj.RequestURI}
	for _, kj := range dj.TokenKeys {
		if authenticatorLen(kj.Type) == 0 {
			continue
		}
		enc, err := decodeBase64URL(kj.Key)
		if err != nil {
			return nil, malformed("issuer directory: token-key is not base64url")
		}
		k, err := ParsePublicKey(kj.Type, enc)
		if err != nil {
			return nil, err
		}
		if kj.NotBefore != 0 {
			k.NotBefore = time.Unix(kj.NotBefore, 0)
		}
		d.Keys = append(d.Keys, k)
	}
	return d, nil
}

// Current is the first key of type t usable at now: the first without a
// not-before in the future (RFC 9578 §4), or nil.
func (d *Directory) Current(t TokenType, now time.Time) *PublicKey {
	for _, k := range d.Keys {
		if k.Type == t && !k.NotBefore.After(now) {
			return k
		}
	}
	return nil
}

// MarshalJSON encodes d as an issuer directory (RFC 9578 §4), the inverse
// of ParseDirectory.
func (d *Directory) MarshalJSON() ([]byte, error) {
	dj := directoryJSON{RequestURI: d.RequestURI, TokenKeys: []tokenKeyJSON{}}
	for _, k := range d.Keys {
		dj.TokenKeys = append(dj.TokenKeys, tokenKeyJSON{Type: k.Type,
			Key: base64.URLEncoding.EncodeToString(k.Encoded()), NotBefore: k.NotBefore.Unix()})
	}
	return json.Marshal(dj)
}
