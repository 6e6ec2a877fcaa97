"""The lab: tools that try governance out (docs/scenario-tools.md, docs/capacity.md)."""
