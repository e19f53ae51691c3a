"""Pipeline stages (sft, sample, evaluate, ...): plain functions with explicit inputs and cached outputs.

An objective (afd/objectives/) is a composition of these stages.
"""
