package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

// dynConfigYAML is the dynamic configuration as operators edit it.
type dynConfigYAML struct {
	SynchronousMode      string            `yaml:"synchronous_mode"`
	SynchronousNodeCount int32             `yaml:"synchronous_node_count"`
	MaximumLagOnFailover int64             `yaml:"maximum_lag_on_failover"`
	PrimaryStartTimeout  string            `yaml:"primary_start_timeout"`
	PostgreSQL           map[string]string `yaml:"postgresql_parameters"`
}

func toYAML(c *pb.DynamicConfig) dynConfigYAML {
	mode := strings.ToLower(strings.TrimPrefix(c.GetSynchronousMode().String(), "SYNCHRONOUS_MODE_"))
	params := c.GetPostgresParameters()
	if params == nil {
		params = map[string]string{}
	}
	return dynConfigYAML{
		SynchronousMode: mode, SynchronousNodeCount: c.GetSynchronousNodeCount(),
		MaximumLagOnFailover: c.GetMaximumLagOnFailoverBytes(),
		PrimaryStartTimeout:  (time.Duration(c.GetPrimaryStartTimeoutMs()) * time.Millisecond).String(),
		PostgreSQL:           params,
	}
}

func fromYAML(y dynConfigYAML) (*pb.DynamicConfig, error) {
	mode, ok := pb.SynchronousMode_value["SYNCHRONOUS_MODE_"+strings.ToUpper(y.SynchronousMode)]
	if !ok {
		return nil, fmt.Errorf("synchronous_mode: %q is not off, on or strict", y.SynchronousMode)
	}
	d, err := time.ParseDuration(y.PrimaryStartTimeout)
	if err != nil {
		return nil, fmt.Errorf("primary_start_timeout: %q: %v", y.PrimaryStartTimeout, err)
	}
	return &pb.DynamicConfig{
		SynchronousMode: pb.SynchronousMode(mode), SynchronousNodeCount: y.SynchronousNodeCount,
		MaximumLagOnFailoverBytes: y.MaximumLagOnFailover, PrimaryStartTimeoutMs: d.Milliseconds(),
		PostgresParameters: y.PostgreSQL,
	}, nil
}

// setKey applies one --set key=value to the YAML form.
func setKey(y *dynConfigYAML, kv string) error {
	k, v, ok := strings.Cut(kv, "=")
	if !ok {
		return fmt.Errorf("--set %q: want key=value", kv)
	}
	switch k {
	case "synchronous_mode":
		y.SynchronousMode = v
	case "synchronous_node_count":
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil {
			return fmt.Errorf("--set %s: %q is not a number", k, v)
		}
		y.SynchronousNodeCount = int32(n)
	case "maximum_lag_on_failover":
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("--set %s: %q is not a number of bytes", k, v)
		}
		y.MaximumLagOnFailover = n
	case "primary_start_timeout":
		y.PrimaryStartTimeout = v
	default:
		return fmt.Errorf("--set %q: unknown key (synchronous_mode, synchronous_node_count, maximum_lag_on_failover, primary_start_timeout; use --pg for PostgreSQL parameters)", k)
	}
	return nil
}

func (c *ctl) showConfigCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show-config",
		Short: "Print the dynamic configuration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := c.state(cmd.Context())
			if err != nil {
				return err
			}
			if c.structured() {
				return c.printJSON(st.Config)
			}
			fmt.Fprintf(c.out, "# version %d\n", st.Config.GetVersion())
			return yaml.NewEncoder(c.out).Encode(toYAML(st.Config))
		},
	}
}

func (c *ctl) editConfigCmd() *cobra.Command {
	var sets, pgs []string
	var apply string
	cmd := &cobra.Command{
		Use:   "edit-config [--set key=value] [--pg param=value] [--apply FILE]",
		Short: "Change the dynamic configuration (compare-and-set; opens $EDITOR without flags)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := c.state(cmd.Context())
			if err != nil {
				return err
			}
			y := toYAML(st.Config)
			switch {
			case apply != "":
				data, err := os.ReadFile(apply)
				if err != nil {
					return fmt.Errorf("--apply: %w", err)
				}
				if err := decodeStrict(data, &y, apply); err != nil {
					return err
				}
			case len(sets) == 0 && len(pgs) == 0:
				if err := editInEditor(&y); err != nil {
					return err
				}
			}
			for _, kv := range sets {
				if err := setKey(&y, kv); err != nil {
					return err
				}
			}
			for _, kv := range pgs {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return fmt.Errorf("--pg %q: want param=value (empty value removes it)", kv)
				}
				if v == "" {
					delete(y.PostgreSQL, k)
				} else {
					y.PostgreSQL[strings.ToLower(k)] = v
				}
			}
			next, err := fromYAML(y)
			if err != nil {
				return err
			}
			var resp *pb.SetConfigResponse
			err = c.call(cmd.Context(), func(ctx context.Context, cl pb.AdminClient) error {
				var err error
				resp, err = cl.SetConfig(ctx, &pb.SetConfig{ExpectedVersion: st.Config.GetVersion(), Config: next})
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.out, "dynamic config is now version %d\n", resp.Config.GetVersion())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&sets, "set", nil, "key=value of the dynamic config (repeatable)")
	f.StringArrayVar(&pgs, "pg", nil, "PostgreSQL parameter=value (repeatable; empty value removes it)")
	f.StringVar(&apply, "apply", "", "replace the config with this YAML file")
	return cmd
}

func decodeStrict(data []byte, y *dynConfigYAML, where string) error {
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(y); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	return nil
}

// editInEditor opens the config in $EDITOR (vi by default).
func editInEditor(y *dynConfigYAML) error {
	f, err := os.CreateTemp("", "pgquorum-config-*.yaml")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := yaml.NewEncoder(f).Encode(*y); err != nil {
		return err
	}
	f.Close()
	editor := os.Getenv("EDITOR")
	if editor == "" {
		editor = "vi"
	}
	cmd := exec.Command("sh", "-c", editor+` "$1"`, "editor", f.Name())
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("$EDITOR (%s): %w", editor, err)
	}
	data, err := os.ReadFile(f.Name())
	if err != nil {
		return err
	}
	return decodeStrict(data, y, f.Name())
}
