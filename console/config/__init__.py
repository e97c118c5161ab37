"""Per-area settings sections, nested under `Settings` as `QUARTERDECK_<AREA>__…`."""
