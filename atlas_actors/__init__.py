"""Atlas: a supervised actor tree trading Binance USD-M perpetual futures."""
