package lifecycle

import (
	"os"
	"path/filepath"
)

func readArchitecture() (string, error) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "architecture.md"))
	return string(b), err
}
