"""The law tasks of the ``cf.`` namespace, one module per stage (listed in law.cfg ``[modules]``)."""
