"""Golden model of the Thermocline engine: the executable specification."""
