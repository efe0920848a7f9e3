package proto

import (
	"fmt"
	"strings"
)

func indexOfStr(s, sub string) bool { return strings.Contains(s, sub) }

func fmtSscan(line string, sec *float64) (int, error) {
	return fmt.Sscanf(strings.TrimSpace(line), "%fs", sec)
}
