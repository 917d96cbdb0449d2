package restart

import "fmt"

// Keep returns the bytes that the process this one took over from kept
// under name or, in a first process, create's, and keeps them for the
// processes after this one. It carries state that a restart must not
// change, whatever happens to files meanwhile, such as the self-signed
// certificate and key that clients trust, from process to process in an
// anonymous file. A nil
// Restarter just calls create.
func (r *Restarter) Keep(name string, create func() ([]byte, error)) ([]byte, error) {
	if r == nil {
		return create()
	}
	f, err := r.upg.File(name)
	if err != nil {
		return nil, fmt.Errorf("restart: inheriting %s: %w", name, err)
	}
	if f != nil {
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return nil, fmt.Errorf("restart: inheriting %s: %w", name, err)
		}
		b := make([]byte, fi.Size())
		if _, err := f.ReadAt(b, 0); err != nil { // the offset is shared with the parent's copy
			return nil, fmt.Errorf("restart: inheriting %s: %w", name, err)
		}
		return b, nil
	}
	b, err := create()
	if err != nil {
		return nil, err
	}
	af, err := anonymousFile(name)
	if err != nil {
		return nil, fmt.Errorf("restart: keeping %s: %w", name, err)
	}
	defer af.Close()
	if _, err := af.Write(b); err != nil {
		return nil, fmt.Errorf("restart: keeping %s: %w", name, err)
	}
	if err := r.upg.AddFile(name, af); err != nil {
		return nil, fmt.Errorf("restart: keeping %s: %w", name, err)
	}
	return b, nil
}
