package standby

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxCount is the most standby agents a window, standby or standbyMax asks for.
const MaxCount = 1000

// Window is one line of a schedule: days of the week, a start and an end
// time of day in the schedule's time zone, and the agents kept meanwhile.
// An end at or before the start runs past midnight into the next day.
type Window struct {
	Days       [7]bool // by time.Weekday
	Start, End int     // minutes after midnight; End 1440 is 24:00
	Count      int
	text       string
}

func (w Window) String() string { return w.text }

// Schedule is a list of windows in one time zone. Where windows overlap,
// the largest count applies.
type Schedule struct {
	Windows []Window
	Loc     *time.Location
}

// At returns the count of the open window with the largest count at t.
func (s Schedule) At(t time.Time) (count int, window string, open bool) {
	if len(s.Windows) == 0 {
		return 0, "", false
	}
	local := t.In(s.Loc)
	minute := local.Hour()*60 + local.Minute()
	today := local.Weekday()
	yesterday := (today + 6) % 7
	for _, w := range s.Windows {
		in := false
		if w.End > w.Start {
			in = w.Days[today] && minute >= w.Start && minute < w.End
		} else { // past midnight: the evening of a listed day, or the morning after it
			in = (w.Days[today] && minute >= w.Start) || (w.Days[yesterday] && minute < w.End)
		}
		if in && (!open || w.Count > count) {
			count, window, open = w.Count, w.text, true
		}
	}
	return count, window, open
}

// ParseSchedule reads windows separated by ';', each "DAYS HH:MM-HH:MM=N":
// DAYS is a day (Mon), a range (Mon-Fri, Fri-Mon wraps) or a comma list
// (Mon,Wed,Fri), in English, any case. The time zone is an IANA name
// ("Europe/Berlin"; "" is UTC). Example:
// "Mon-Fri 08:00-18:00=2; Sat 09:00-12:00=1".
func ParseSchedule(text, zone string) (Schedule, error) {
	loc := time.UTC
	if zone != "" {
		var err error
		if loc, err = time.LoadLocation(zone); err != nil {
			return Schedule{}, fmt.Errorf("time zone %q: not an IANA time zone name (e.g. Europe/Berlin)", zone)
		}
	}
	s := Schedule{Loc: loc}
	for _, part := range strings.Split(text, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		w, err := parseWindow(part)
		if err != nil {
			return Schedule{}, fmt.Errorf("window %q: %w (want e.g. \"Mon-Fri 08:00-18:00=2\")", part, err)
		}
		s.Windows = append(s.Windows, w)
	}
	if len(s.Windows) > 50 {
		return Schedule{}, fmt.Errorf("%d windows; at most 50", len(s.Windows))
	}
	return s, nil
}

func parseWindow(text string) (Window, error) {
	w := Window{text: text}
	days, rest, ok := strings.Cut(text, " ")
	if !ok {
		return w, fmt.Errorf("days and times are separated by a space")
	}
	span, count, ok := strings.Cut(strings.TrimSpace(rest), "=")
	if !ok {
		return w, fmt.Errorf("no =COUNT")
	}
	n, err := strconv.Atoi(strings.TrimSpace(count))
	if err != nil || n < 0 || n > MaxCount {
		return w, fmt.Errorf("count %q is not a number from 0 to %d", count, MaxCount)
	}
	w.Count = n
	from, to, ok := strings.Cut(strings.TrimSpace(span), "-")
	if !ok {
		return w, fmt.Errorf("times are HH:MM-HH:MM")
	}
	if w.Start, err = clock(from, false); err != nil {
		return w, err
	}
	if w.End, err = clock(to, true); err != nil {
		return w, err
	}
	if w.Start == w.End {
		return w, fmt.Errorf("the window starts when it ends")
	}
	for _, d := range strings.Split(days, ",") {
		first, last, isRange := strings.Cut(d, "-")
		a, err := day(first)
		if err != nil {
			return w, err
		}
		b := a
		if isRange {
			if b, err = day(last); err != nil {
				return w, err
			}
		}
		for i := a; ; i = (i + 1) % 7 {
			w.Days[i] = true
			if i == b {
				break
			}
		}
	}
	return w, nil
}

// day reads a day of the week in English, abbreviated (Mon) or not.
func day(s string) (int, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	for i := range 7 {
		full := strings.ToLower(time.Weekday(i).String())
		if s == full || s == full[:3] {
			return i, nil
		}
	}
	return 0, fmt.Errorf("%q is not a day of the week (Mon, Tue, ... Sun)", s)
}

// clock reads HH:MM; 24:00 only as an end.
func clock(s string, end bool) (int, error) {
	h, m, ok := strings.Cut(strings.TrimSpace(s), ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || len(m) != 2 || hh < 0 || mm < 0 || mm > 59 || hh > 24 || (hh == 24 && (mm != 0 || !end)) {
		return 0, fmt.Errorf("%q is not a time HH:MM", s)
	}
	return hh*60 + mm, nil
}
