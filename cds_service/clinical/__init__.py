"""The clinical decision: which covered drugs are ordered, the guideline rows that apply
(with phenoconversion, the order's dose and the label rules), and the cards with their
suggestions; the patient-view summary from the same decisions."""
