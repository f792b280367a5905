"""The reference against PyTorch eager on the CPU: one run, same threads, medians and ratios (never asserted)."""
