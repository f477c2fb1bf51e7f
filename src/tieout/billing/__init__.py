"""What an invoice should be: periods, proration, discounts (the expected-invoice engine)."""
