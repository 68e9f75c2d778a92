"""Musculoskeletal physics: Hill-type muscles, activation and joint dynamics (numpy/torch)."""
