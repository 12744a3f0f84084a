"""The environments: math, logic, instruction, code, tool, safety, faithfulness (K2 report §3.2.1)."""
