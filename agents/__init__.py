"""Agents for SearchQA: the policy interface, scripted and LM policies, and their trainers."""
