package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/joho/godotenv"
)

// loadEnvFile reads ENV_FILE, or .env in the working directory when ENV_FILE
// is not set, the way the original Django server's python-dotenv did: each
// KEY=value line becomes an environment variable unless the environment
// already has it (the real environment wins; flags win over both). The
// values go into the process environment, not only into wsedge's settings,
// because the AWS SDK reads AWS_* from there, as boto3 did. It returns the
// file read ("" for none). A missing .env is fine; a missing ENV_FILE is an
// error, since someone asked for it.
func loadEnvFile(e env) (string, error) {
	file, explicit := e("ENV_FILE")
	if !explicit || file == "" {
		file = ".env"
		if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
			return "", nil
		}
	}
	if err := godotenv.Load(file); err != nil {
		return "", fmt.Errorf("env file %s: %w", file, err)
	}
	return file, nil
}
