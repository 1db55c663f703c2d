"""gspx: forward RudderStack events to Gainsight PX."""

__version__ = "0.1.0"
