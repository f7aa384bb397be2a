package drill

// newKernelTarget runs the script against the Linux kernel.
func newKernelTarget(cfg *Config, logf func(string, ...any)) (target, error) {
	return nil, &skipError{"the kernel target is not built yet"}
}
