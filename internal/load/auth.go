package load

import "context"

// StaticAuthorization is a proxyclient.Authorizer that sends the same
// Proxy-Authorization value with every tunnel request, such as a Basic
// credential. Authenticated load with single-use tokens plugs a token pool,
// another proxyclient.Authorizer, into client.Dialer instead.
type StaticAuthorization string

// Authorize returns the value; after a 407 too, as it has no other.
func (a StaticAuthorization) Authorize(context.Context, []string) (string, error) {
	return string(a), nil
}
