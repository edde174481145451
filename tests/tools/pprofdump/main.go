// pprofdump: an independent pprof decoder for Ember's tests.
//
// Usage: pprofdump FILE
//
// Reads a gzip-compressed or plain pprof profile with github.com/google/pprof/profile (not
// Ember's encoder), checks it with CheckValid and with the Pyroscope ingestion rules that the
// decoded form still shows, and prints one JSON object on stdout. On any error it prints a
// message on stderr and exits 1.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/google/pprof/profile"
)

type mappingOut struct {
	ID           uint64 `json:"id"`
	Start        uint64 `json:"start"`
	Limit        uint64 `json:"limit"`
	Offset       uint64 `json:"offset"`
	File         string `json:"file"`
	BuildID      string `json:"build_id"`
	HasFunctions bool   `json:"has_functions"`
}

// frameOut is one line of a location: the function and where in its source the sample was.
type frameOut struct {
	Name      string `json:"name"`
	File      string `json:"file"`       // Function.filename, "" when none
	Line      int64  `json:"line"`       // Line.line, 0 when unknown
	StartLine int64  `json:"start_line"` // Function.start_line, 0 when unknown
}

type sampleOut struct {
	Stack     []string   `json:"stack"`     // function names, leaf first, inlined lines expanded
	Frames    []frameOut `json:"frames"`    // the same lines as stack, in the same order
	Values    []int64    `json:"values"`    // one per sample type
	Addresses []uint64   `json:"addresses"` // one per location, leaf first
	Mappings  []uint64   `json:"mappings"`  // mapping id per location, 0 for none
}

type dump struct {
	SampleTypes   [][2]string  `json:"sample_types"`
	PeriodType    *[2]string   `json:"period_type"`
	Period        int64        `json:"period"`
	TimeNanos     int64        `json:"time_nanos"`
	DurationNanos int64        `json:"duration_nanos"`
	Comments      []string     `json:"comments"`
	Mappings      []mappingOut `json:"mappings"`
	Locations     int          `json:"locations"`
	Functions     int          `json:"functions"`
	Samples       []sampleOut  `json:"samples"`
}

// pyroscopeCheck applies the rules from Pyroscope's ValidateProfile that survive decoding
// (string_table[0] == "" is already enforced by the decoder itself).
func pyroscopeCheck(p *profile.Profile) error {
	if len(p.SampleType) == 0 {
		return fmt.Errorf("empty profile: no sample_type")
	}
	for _, st := range p.SampleType {
		if strings.Contains(st.Type, "-") {
			return fmt.Errorf("sample type %q contains '-'", st.Type)
		}
	}
	for _, l := range p.Location {
		if l.ID == 0 {
			return fmt.Errorf("location with id 0")
		}
	}
	for _, f := range p.Function {
		if f.ID == 0 {
			return fmt.Errorf("function with id 0")
		}
		for _, s := range []string{f.Name, f.SystemName, f.Filename} {
			if !utf8.ValidString(s) {
				return fmt.Errorf("function %d: invalid UTF-8 %q", f.ID, s)
			}
		}
	}
	for _, m := range p.Mapping {
		if !utf8.ValidString(m.File) || !utf8.ValidString(m.BuildID) {
			return fmt.Errorf("mapping %d: invalid UTF-8", m.ID)
		}
	}
	for _, c := range p.Comments {
		if !utf8.ValidString(c) {
			return fmt.Errorf("comment: invalid UTF-8 %q", c)
		}
	}
	for i, s := range p.Sample {
		if len(s.Value) != len(p.SampleType) {
			return fmt.Errorf("sample %d: %d values for %d sample types", i, len(s.Value), len(p.SampleType))
		}
	}
	return nil
}

func run(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	p, err := profile.Parse(f) // detects gzip, runs CheckValid
	if err != nil {
		return err
	}
	if err := p.CheckValid(); err != nil {
		return err
	}
	if err := pyroscopeCheck(p); err != nil {
		return err
	}

	d := dump{
		SampleTypes:   [][2]string{},
		Period:        p.Period,
		TimeNanos:     p.TimeNanos,
		DurationNanos: p.DurationNanos,
		Comments:      p.Comments,
		Mappings:      []mappingOut{},
		Locations:     len(p.Location),
		Functions:     len(p.Function),
		Samples:       []sampleOut{},
	}
	if d.Comments == nil {
		d.Comments = []string{}
	}
	for _, st := range p.SampleType {
		d.SampleTypes = append(d.SampleTypes, [2]string{st.Type, st.Unit})
	}
	if p.PeriodType != nil {
		d.PeriodType = &[2]string{p.PeriodType.Type, p.PeriodType.Unit}
	}
	for _, m := range p.Mapping {
		d.Mappings = append(d.Mappings, mappingOut{m.ID, m.Start, m.Limit, m.Offset, m.File, m.BuildID, m.HasFunctions})
	}
	for _, s := range p.Sample {
		o := sampleOut{Stack: []string{}, Frames: []frameOut{}, Values: s.Value, Addresses: []uint64{}, Mappings: []uint64{}}
		if o.Values == nil {
			o.Values = []int64{}
		}
		for _, l := range s.Location {
			o.Addresses = append(o.Addresses, l.Address)
			var mid uint64
			if l.Mapping != nil {
				mid = l.Mapping.ID
			}
			o.Mappings = append(o.Mappings, mid)
			for _, ln := range l.Line {
				o.Stack = append(o.Stack, ln.Function.Name)
				o.Frames = append(o.Frames, frameOut{ln.Function.Name, ln.Function.Filename, ln.Line, ln.Function.StartLine})
			}
		}
		d.Samples = append(d.Samples, o)
	}

	out, err := json.Marshal(&d)
	if err != nil {
		return err
	}
	_, err = fmt.Printf("%s\n", out)
	return err
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: pprofdump FILE")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintf(os.Stderr, "pprofdump: %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
