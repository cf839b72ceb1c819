package standby

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func mustSchedule(t *testing.T, text, zone string) Schedule {
	t.Helper()
	s, err := ParseSchedule(text, zone)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestScheduleAt(t *testing.T) {
	s := mustSchedule(t, "Mon-Fri 08:00-18:00=2; Sat 09:00-12:00=1; Fri,Sat 22:00-02:00=3; mon 12:00-13:00=5", "Europe/Berlin")
	berlin, _ := time.LoadLocation("Europe/Berlin")
	at := func(day, hhmm string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", day+" "+hhmm, berlin)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	// 2026-12-07 is a Monday.
	for _, c := range []struct {
		day, hhmm string
		want      int
		open      bool
	}{
		{"2026-12-07", "07:59", 0, false},
		{"2026-12-07", "08:00", 2, true},
		{"2026-12-07", "12:30", 5, true}, // overlapping windows: the largest count
		{"2026-12-07", "17:59", 2, true},
		{"2026-12-07", "18:00", 0, false}, // the end is not in the window
		{"2026-12-11", "23:00", 3, true},  // Friday evening, past midnight
		{"2026-12-12", "01:59", 3, true},  // into Saturday morning
		{"2026-12-12", "09:30", 1, true},
		{"2026-12-13", "01:00", 3, true}, // Saturday's window runs into Sunday
		{"2026-12-13", "02:00", 0, false},
		{"2026-12-14", "01:00", 0, false}, // no Sunday evening window
	} {
		n, _, open := s.At(at(c.day, c.hhmm))
		if n != c.want || open != c.open {
			t.Errorf("%s %s Berlin: %d open=%v, want %d open=%v", c.day, c.hhmm, n, open, c.want, c.open)
		}
	}
	// The same instant in UTC: 08:00 in Berlin (winter) is 07:00 UTC.
	if n, _, _ := s.At(time.Date(2026, 12, 7, 7, 0, 0, 0, time.UTC)); n != 2 {
		t.Errorf("07:00 UTC is 08:00 in Berlin: got %d, want 2", n)
	}
	// Summer time: 08:00 in Berlin is 06:00 UTC.
	if n, _, _ := s.At(time.Date(2026, 7, 6, 6, 0, 0, 0, time.UTC)); n != 2 {
		t.Errorf("06:00 UTC in July is 08:00 in Berlin: got %d, want 2", n)
	}
}

func TestParseScheduleErrors(t *testing.T) {
	for text, want := range map[string]string{
		"Mon-Fri 08:00-18:00":      "no =COUNT",
		"Mon-Fri 8-18=2":           "not a time",
		"Funday 08:00-18:00=2":     "not a day",
		"Mon 08:00-08:00=2":        "starts when it ends",
		"Mon 24:00-08:00=2":        "not a time",
		"Mon 08:00-18:00=1001":     "not a number from 0 to 1000",
		"Mon 08:00-18:00=-1":       "not a number",
		"Mon08:00-18:00=1":         "separated by a space",
		"Mon 08:00-18:60=1":        "not a time",
		"Mon 08:00-18:00=two":      "not a number",
		"Tue-Thu,Sat 08:00-1800=1": "not a time",
	} {
		_, err := ParseSchedule(text, "")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error saying %q", text, err, want)
		}
	}
	if _, err := ParseSchedule("Mon 08:00-18:00=1", "Mars/Olympus"); err == nil || !strings.Contains(err.Error(), "IANA") {
		t.Errorf("an unknown time zone: %v", err)
	}
	s := mustSchedule(t, "Fri-Mon 00:00-24:00=1", "")
	for d, want := range map[time.Weekday]bool{time.Friday: true, time.Saturday: true, time.Sunday: true, time.Monday: true, time.Tuesday: false} {
		if got := s.Windows[0].Days[d]; got != want {
			t.Errorf("Fri-Mon wraps: %s %v", d, got)
		}
	}
}

// monday is the start of a week, in UTC, for the history tests.
var monday = time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)

func TestForecastReadsTheSameTimeOfPastWeeks(t *testing.T) {
	week := 7 * 24 * time.Hour
	h := NewHistory(monday)
	burst := monday.Add(9 * time.Hour) // Monday 09:00
	id := uint64(0)
	for w, jobs := range []int{4, 10, 6} { // three Mondays' 09:00 bursts
		for range jobs {
			id++
			h.Add(burst.Add(time.Duration(w) * week).Add(time.Duration(id%200) * time.Second))
		}
	}
	now := burst.Add(3 * week) // the fourth Monday at 09:00
	for p, want := range map[int]int{10: 4, 50: 6, 90: 10} {
		if got, weeks := Forecast(h, now, p, 100); got != want || weeks != 3 {
			t.Errorf("p%d: %d from %d weeks, want %d from 3", p, got, weeks, want)
		}
	}
	// Five minutes before, the next bucket's burst is already kept ready.
	if got, _ := Forecast(h, now.Add(-5*time.Minute), 90, 100); got != 10 {
		t.Errorf("08:55: %d, want the 09:00 burst's 10 ready", got)
	}
	if got, _ := Forecast(h, now.Add(-10*time.Minute), 90, 100); got != 0 {
		t.Errorf("08:50: %d, want 0", got)
	}
	if got, _ := Forecast(h, now, 90, 3); got != 3 {
		t.Errorf("the cap: %d, want 3", got)
	}
}

func TestForecastKnowsWhatItDoesNotKnow(t *testing.T) {
	week := 7 * 24 * time.Hour
	// A history that began in last week's 09:10 bucket does not count 09:00
	// and 09:05 as zero demand, nor the weeks before it.
	h := NewHistory(monday.Add(week + 9*time.Hour + 11*time.Minute))
	if got, weeks := Forecast(h, monday.Add(2*week+9*time.Hour), 50, 10); got != 0 || weeks != 0 {
		t.Errorf("%d from %d weeks, want no samples", got, weeks)
	}
	if got, weeks := Forecast(h, monday.Add(2*week+10*time.Hour), 50, 10); got != 0 || weeks != 1 {
		t.Errorf("10:00 is known for one week (and was quiet): %d from %d weeks", got, weeks)
	}
	if got, weeks := Forecast(nil, monday, 50, 10); got != 0 || weeks != 0 {
		t.Errorf("no history: %d, %d", got, weeks)
	}
}

func TestHistoryMemoryIsBounded(t *testing.T) {
	week := 7 * 24 * time.Hour
	h := NewHistory(monday)
	for i := range 20 { // twenty weeks of jobs: only the last PastWeeks+1 stay
		h.Add(monday.Add(time.Duration(i) * week))
	}
	// An old job arriving late lands nowhere, nor one without a queue time.
	h.Add(monday)
	h.Add(time.Time{})
	if got, _ := Forecast(h, monday.Add(20*week), 100, 100); got != 1 {
		t.Errorf("got %d, want the previous week's 1", got)
	}
}

func TestPercentile(t *testing.T) {
	s := []int{5, 1, 4, 2, 3}
	for p, want := range map[int]int{1: 1, 20: 1, 21: 2, 50: 3, 90: 5, 100: 5} {
		if got := Percentile(s, p); got != want {
			t.Errorf("p%d of %v: %d, want %d", p, s, got, want)
		}
	}
	if Percentile(nil, 50) != 0 {
		t.Error("no samples")
	}
}

func TestWantOrder(t *testing.T) {
	s := Settings{Fixed: 1, Schedule: mustSchedule(t, "Mon 09:00-10:00=4", "")}
	if n, why := Want(s, nil, monday.Add(9*time.Hour)); n != 4 || !strings.Contains(why, "Mon 09:00-10:00=4") {
		t.Errorf("in the window: %d %q", n, why)
	}
	if n, why := Want(s, nil, monday.Add(11*time.Hour)); n != 1 || why != "standby" {
		t.Errorf("outside it: %d %q", n, why)
	}
	s = Settings{Auto: true, Percentile: 50, Max: 5}
	if n, why := Want(s, NewHistory(monday), monday); n != 0 || !strings.Contains(why, "no history") {
		t.Errorf("auto without history: %d %q", n, why)
	}
	if (Settings{}).Enabled() || !(Settings{Auto: true}).Enabled() {
		t.Error("Enabled")
	}
}

func TestKeep(t *testing.T) {
	t0 := monday
	pods := []Pod{
		{Name: "b", Created: t0.Add(time.Minute)},
		{Name: "busy", Created: t0, Busy: true},
		{Name: "a", Created: t0.Add(time.Minute)},
		{Name: "new", Created: t0.Add(time.Hour)},
	}
	keep := Keep(pods, 2)
	if len(keep) != 2 || !keep["a"] || !keep["b"] {
		t.Errorf("kept %v, want the two oldest idle pods a and b", keep)
	}
	if k := Keep(pods, 0); len(k) != 0 {
		t.Errorf("wanted 0: kept %v", k)
	}
	if k := Keep(pods, 10); len(k) != 3 || k["busy"] {
		t.Errorf("wanted more than idle: kept %v", k)
	}
	// Every order of the same pods gives the same answer: any replica
	// decides alike.
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		n := r.IntN(12)
		ps := make([]Pod, n)
		for i := range ps {
			ps[i] = Pod{Name: fmt.Sprintf("p%d", i), Created: t0.Add(time.Duration(r.IntN(4)) * time.Minute), Busy: r.IntN(3) == 0}
		}
		wanted := r.IntN(6)
		first := Keep(ps, wanted)
		r.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
		second := Keep(ps, wanted)
		idle := 0
		for _, p := range ps {
			if !p.Busy {
				idle++
			}
			if first[p.Name] != second[p.Name] || (p.Busy && first[p.Name]) {
				t.Fatalf("pods %v wanted %d: %v then %v", ps, wanted, first, second)
			}
		}
		if len(first) != min(wanted, idle) {
			t.Fatalf("kept %d of %d idle for %d wanted", len(first), idle, wanted)
		}
	}
}
