package imports

import (
	stdctx "context"
	"math/rand"
	. "net/url"
	"text/template"

	"github.com/durable-go/durable/cmd/durable-stub/testdata/golden/imports/dep"
)

// Parse takes its context under another name, a type from a dot import and
// one from a package whose name differs from its directory.
func (s *Store) Parse(ctx stdctx.Context, tmpl *template.Template, u *URL) (depname.Thing, error) {
	return depname.Thing{}, nil
}

// Nested uses imported types inside composite types.
func (s *Store) Nested(ctx stdctx.Context, m map[string][]*rand.Rand, f struct {
	When template.FuncMap
	URL  *Userinfo
}) ([2]depname.Thing, error) {
	return [2]depname.Thing{}, nil
}

// Many takes five arguments with imported types: Stub.Call.
func (s *Store) Many(ctx stdctx.Context, a, b, c, e int, r *rand.Rand) (*depname.Thing, error) {
	return nil, nil
}
