package httpapi

import "errors"

// ErrBadQuery is returned for a health check query parameter that cannot
// be parsed (for example lag=ten).
var ErrBadQuery = errors.New("bad query parameter")
