"""Operations: logging, listening sockets, `stepup-bff doctor` and `stepup-bff dev`."""
